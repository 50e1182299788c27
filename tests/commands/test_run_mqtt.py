"""`edgecam run --mqtt URL --events` end to end: the real model on the asset video, a real
Mosquitto, and a persistent-session subscriber.

Exchange checked: the run connects, publishes retained `online`, one `detections` message per
frame with a detection (gap-free `seq`), tracked-object `events` (every `new` paired with an
`end`, including the shutdown flush), retained `count/<label>` from the tracker (ending at 0),
JPEG `snapshot/<label>`, retained `stats`, and `offline` on the clean stop.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import jsonschema
import numpy as np
import pytest

from edgecam.cli import main
from edgecam.schema import json_schema, parse_detections, parse_event
from tests.support.mosquitto import Broker, Collector


@pytest.fixture()
def run_env(monkeypatch: pytest.MonkeyPatch, asset_models: Path, tmp_path: Path) -> Path:
    monkeypatch.setenv("EDGECAM_MODELS_DIR", str(asset_models))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_run_publishes_detections_events_counts_snapshots(
    run_env: Path,
    asset_video: Path,
    broker: Broker,
    collector_factory: Callable[..., Collector],
    capsys: pytest.CaptureFixture[str],
) -> None:
    collector = collector_factory(broker, "edgecam/cam1/#")
    rc = main(
        [
            "run",
            "--model",
            "ssd_mobilenet_v1",
            "--source",
            str(asset_video),
            "--max-frames",
            "320",
            "--mqtt",
            broker.url,
            "--device-id",
            "cam1",
            "--events",
            "--sink",
            "none",
            "--set",
            "snapshots.enabled=true",
            "--set",
            "stats.interval_s=1",
        ]
    )
    assert rc == 0
    assert capsys.readouterr().out == ""  # --sink none: MQTT only
    assert collector.wait_for(
        lambda: bool(collector.on("/status")) and collector.on("/status")[-1].payload == b"offline",
        10,
    )

    detections = [json.loads(m.payload) for m in collector.on("/detections")]
    schema = json_schema("detections")
    for payload in detections:
        jsonschema.validate(payload, schema)
        parse_detections(payload)
    assert [p["seq"] for p in detections] == list(range(len(detections)))
    assert len({p["run_id"] for p in detections}) == 1
    assert sum(1 for p in detections if any(d["label"] == "person" for d in p["detections"])) > 100

    events = [json.loads(m.payload) for m in collector.on("/events")]
    for payload in events:
        jsonschema.validate(payload, json_schema("events"))
        parse_event(payload)
    news = [e["track_id"] for e in events if e["event"] == "new"]
    ends = [e["track_id"] for e in events if e["event"] == "end"]
    assert news and sorted(news) == sorted(ends)  # balanced, flush included
    assert {e["label"] for e in events} == {"person"}  # one-frame false positives never confirm

    counts = [int(m.payload) for m in collector.on("/count/person")]
    assert counts[0] == 1 and counts[-1] == 0
    assert not collector.on("/count/tv")  # raw per-frame counts are off when tracking

    assert collector.on("/snapshot/person")
    # Retained: a subscriber arriving after the run still gets the last picture and count.
    late = collector_factory(
        broker,
        "edgecam/cam1/snapshot/+",
        "edgecam/cam1/count/+",
        client_id="late-subscriber",
        persistent=False,
    )
    assert late.wait_for(
        lambda: bool(late.on("/snapshot/person")) and bool(late.on("/count/person")), 5
    )
    snap = late.on("/snapshot/person")[0]
    assert snap.retain and late.on("/count/person")[0].payload == b"0"
    image = cv2.imdecode(np.frombuffer(snap.payload, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.shape[2] == 3

    stats: list[dict[str, Any]] = [json.loads(m.payload) for m in collector.on("/stats")]
    assert stats and stats[-1]["mqtt"]["messages_dropped"] == 0
    for payload in stats:
        jsonschema.validate(payload, json_schema("stats"))


def test_run_events_as_json_lines_without_a_broker(
    run_env: Path, asset_video: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(
        [
            "run",
            "-m",
            "ssd_mobilenet_v1",
            "-s",
            str(asset_video),
            "--max-frames",
            "200",
            "--events",
            "--detections-only",
        ]
    )
    assert rc == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    events = [p for p in lines if p["type"] == "event"]
    results = [p for p in lines if p["type"] == "detections"]
    assert results and events
    assert [e["seq"] for e in events] == list(range(len(events)))
    assert sorted(e["track_id"] for e in events if e["event"] == "new") == sorted(
        e["track_id"] for e in events if e["event"] == "end"
    )
    for payload in events:
        jsonschema.validate(payload, json_schema("events"))


def test_run_rejects_a_bad_mqtt_url(run_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["run", "--mqtt", "mqtt://127.0.0.1:99999", "--source", "x.mp4"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "mqtt.url" in err and "99999" in err
