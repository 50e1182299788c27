"""Home Assistant's own discovery code over what a real `edgecam run` publishes.

A real `edgecam run --events --mqtt URL --set homeassistant.enabled=true` (a subprocess) runs
the detector on the looping asset video with a zone and snapshots, publishing to a real
Mosquitto; a subscriber to `#` records everything in order. Meanwhile the test plays Home
Assistant: it presses the snapshot button, switches snapshots off and on and detection off
and on, and announces an HA restart. A retained config of a label an older run announced is
on the broker before the start. Then the capture goes through Home Assistant (the pinned
release, in its own Python 3.13 venv: tests/support/hass_venv.py) — discovery processing
with abbreviation expansion, origin/device checks and the platform schemas, then every state,
image, event and command message against the configs it belongs to — and must have 0
problems. The report (HA version, configs checked, entities) is kept in the test's folder.

Slow: the first run builds the venv (~3 min, ~600 MB, cached after that by requirement);
then ~40 s.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edgecam.core import hass
from tests.sinks.mqtt.test_hass import last, publish
from tests.support.hass_venv import hass_python
from tests.support.mosquitto import Broker, Collector
from tests.support.paths import REPO

DEVICE = "cam1"
T = hass.Topics.of("edgecam", DEVICE)
CONFIG = """
[objects]
allow = ["person", "car"]

[[zones]]
name = "left"
points = [[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]]

[snapshots]
enabled = true
max_size = 320

[stats]
interval_s = 1
"""
STALE = "homeassistant/sensor/edgecam_cam1/tv_count/config"


@pytest.fixture(scope="module")
def validator() -> Path:
    return hass_python()


@pytest.fixture
def edgecam_run(
    tmp_path: Path, asset_models: Path, asset_video: Path
) -> Iterator[Callable[[str], subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []

    def start(url: str) -> subprocess.Popen[str]:
        config = tmp_path / "edgecam.toml"
        config.write_text(CONFIG)
        env = {
            **os.environ,
            "EDGECAM_MODELS_DIR": str(asset_models),
            "XDG_STATE_HOME": str(tmp_path / "state"),
            "PYTHONPATH": str(REPO),
        }
        cmd = [sys.executable, "-m", "edgecam", "run", "--config", str(config)]
        cmd += ["--source", str(asset_video), "--loop", "--events", "--mqtt", url]
        cmd += ["--device-id", DEVICE, "--sink", "none", "--set", "homeassistant.enabled=true"]
        proc = subprocess.Popen(
            cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def validate(validator: Path, messages: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The validator, run by the Home Assistant venv's Python from the repository root."""
    return subprocess.run(
        [str(validator), "-m", "tests.support.hass.validate", str(messages), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def capture(col: Collector) -> list[dict[str, Any]]:
    with col._cond:
        return [
            {
                "topic": m.topic,
                "payload_b64": base64.b64encode(m.payload).decode(),
                "retained": m.retain,
            }
            for m in col.messages
        ]


def step(col: Collector, predicate: Callable[[], bool], what: str, proc: Any) -> None:
    if not col.wait_for(predicate, 60):
        err = proc.stderr.read() if proc.poll() is not None else "(still running)"
        raise AssertionError(f"never saw {what}; edgecam stderr: {err[-2000:]}")


def inference_paused(col: Collector) -> bool:
    """Two stats messages in a row: frames still read, none inferred in between."""
    stats = [json.loads(m.payload)["pipeline"] for m in col.on("/stats")][-2:]
    return (
        len(stats) == 2
        and stats[0].get("processed") == stats[1].get("processed")
        and stats[1].get("frames_in", 0) > stats[0].get("frames_in", 0)
    )


def drive_like_home_assistant(broker: Broker, col: Collector, proc: Any) -> None:
    """What a user does from HA's dashboard during the run, waiting for each answer."""
    step(col, lambda: last(col, T.occupancy("person")) == b"ON", "a person", proc)
    publish(broker, T.command("snapshot"), "PRESS")
    step(col, lambda: last(col, T.still) is not None, "the still", proc)
    publish(broker, T.command("snapshots"), "OFF")
    step(col, lambda: last(col, T.state("snapshots")) == b"OFF", "snapshots OFF", proc)
    publish(broker, T.command("snapshots"), "ON")
    step(col, lambda: last(col, T.state("snapshots")) == b"ON", "snapshots ON", proc)
    publish(broker, T.command("detect"), "OFF")
    step(col, lambda: last(col, T.state("detect")) == b"OFF", "detection OFF", proc)
    step(col, lambda: last(col, T.occupancy("person")) == b"OFF", "occupancy OFF", proc)
    step(col, lambda: inference_paused(col), "inference paused (stats)", proc)
    n_detections = len(col.on("/detections"))
    publish(broker, "homeassistant/status", "online")  # HA restarts
    publish(broker, T.command("detect"), "ON")
    step(col, lambda: last(col, T.state("detect")) == b"ON", "detection ON", proc)
    step(col, lambda: len(col.on("/detections")) > n_detections + 5, "detections again", proc)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_home_assistant_accepts_everything_a_real_run_publishes(
    validator: Path,
    broker: Broker,
    collector_factory: Callable[..., Collector],
    edgecam_run: Callable[[str], subprocess.Popen[str]],
    tmp_path: Path,
) -> None:
    publish(broker, STALE, json.dumps({"name": "tv count", "state_topic": "x"}), retain=True)
    col = collector_factory(broker, "#", persistent=False)
    proc = edgecam_run(broker.url)
    drive_like_home_assistant(broker, col, proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0, proc.stderr.read() if proc.stderr else ""
    assert col.wait_for(lambda: last(col, T.status) == b"offline", 10)
    assert last(col, STALE) == b""  # the retired entity was removed

    messages = tmp_path / "messages.json"
    messages.write_text(json.dumps(capture(col)))
    report_path = tmp_path / "hass-report.json"
    done = validate(validator, messages, "-o", str(report_path))
    assert done.returncode in (0, 1), done.stderr
    report = json.loads(report_path.read_text())
    assert report["problems"] == [], json.dumps(report["problems"], indent=1)
    assert done.returncode == 0
    assert report["ha_version"] == "2025.4.4"
    # What HA built is exactly what edgecam meant to announce.
    planned = hass.Camera(
        device_id=DEVICE,
        model="ssd_mobilenet_v1",
        version="x",
        labels=("person", "car"),
        zones=(hass.ZoneSpec("left", ("person", "car")),),
        snapshots=True,
        cpu_temperature=any(e["unique_id"].endswith("cpu_temperature") for e in report["entities"]),
    )
    assert sorted(e["unique_id"] for e in report["entities"]) == sorted(
        e.unique_id for e in hass.entities(planned)
    )
    assert report["configs_checked"] >= 2 * len(report["entities"]) + 1  # + HA restart, stale
    # Every entity got a message on its state/image topic except the car's picture (the
    # video has no car): each config was checked against real payloads, not just parsed.
    unseen = [n for n in report["notes"] if "no message seen" in n]
    assert unseen == [
        "image:edgecam_cam1_car_snapshot: no message seen on image topic edgecam/cam1/snapshot/car"
    ]
    print(
        f"\nHome Assistant {report['ha_version']}: {report['configs_checked']} configs, "
        f"{report['messages_checked']} messages checked, {len(report['problems'])} problems; "
        f"report: {report_path}"
    )


@pytest.mark.slow
def test_the_validator_catches_what_home_assistant_rejects(validator: Path, tmp_path: Path) -> None:
    """Known-bad configs and states: the 0 above means something only if these are caught."""
    camera = hass.Camera("c", "m", "v", labels=("person",))
    good = {e.key: dict(e.config) for e in hass.entities(camera)}
    bad_sensor = {k: v for k, v in good["person_count"].items() if k != "default_entity_id"}
    bad_diag = {**good["fps"], "entity_category": "config"}
    occupancy = good["person_occupancy"]
    bad_device = {**occupancy, "device": {**occupancy["device"], "colour": "red"}}
    prefix = "homeassistant"
    cases = [
        (f"{prefix}/sensor/edgecam_c/person_count/config", json.dumps(bad_sensor), True),
        (f"{prefix}/sensor/edgecam_c/fps/config", json.dumps(bad_diag), True),
        (f"{prefix}/binary_sensor/edgecam_c/person_occupancy/config", json.dumps(bad_device), True),
        (f"{prefix}/event/edgecam_c/events/config", json.dumps(good["events"]), True),
        ("edgecam/c/count/person", "two", True),
        ("edgecam/c/event", json.dumps({"event_type": "new"}), True),  # retained event
        ("edgecam/c/event", json.dumps({"event_type": "update"}), False),
    ]
    messages = tmp_path / "bad.json"
    messages.write_text(
        json.dumps([{"topic": t, "payload": p, "retained": r} for t, p, r in cases])
    )
    done = validate(validator, messages)
    assert done.returncode == 1, done.stderr
    problems = json.loads(done.stdout)["problems"]
    kinds = {(p["kind"], p["topic"].rsplit("/", 2)[-2]) for p in problems}
    assert ("compat", "person_count") in kinds  # object_id without default_entity_id
    assert ("schema", "fps") in kinds  # a sensor cannot be a config entity
    assert ("origin", "person_occupancy") in kinds or ("schema", "person_occupancy") in kinds
    assert ("state", "c") in kinds  # non-numeric count, retained event, unknown event type
    assert any("retained event" in p["message"] for p in problems)
    assert any("'update' is not in event_types" in p["message"] for p in problems)
    assert any("non-numeric state 'two'" in p["message"] for p in problems)
