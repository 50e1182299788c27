"""MqttSink against a real Mosquitto: the exchange a subscriber sees.

Connect -> retained `status` online; each frame with detections -> one QoS 1 `detections`
message (seq 0, 1, 2, ... gap-free, one run_id); retained `stats` and `count/<label>`; events
and snapshots; clean close -> retained `offline`. Every JSON payload received is validated
against the shipped schema. The TLS + password broker checks that refusals (wrong password,
untrusted CA, anonymous, wrong protocol) are a SinkError at start-up, and that the password
never shows up in logs or in the process's command line.
"""

from __future__ import annotations

import itertools
import json
import logging
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from edgecam.config.model import ModelSection
from edgecam.config.mqtt import MqttSection, validate_mqtt
from edgecam.config.outbox import OutboxSection
from edgecam.config.pipeline import PipelineSection
from edgecam.core.events import EventEngine, events_to_dict
from edgecam.errors import SinkError
from edgecam.pipeline.engine import open_engine
from edgecam.pipeline.pipeline import Pipeline
from edgecam.schema import json_schema, parse_detections, parse_stats
from edgecam.sinks import Sink
from edgecam.sinks.mqtt import MqttSink, open_mqtt_sink
from edgecam.sinks.mqtt_client import Backoff
from edgecam.sources import open_source
from tests.support.mosquitto import (
    PASSWORD,
    USERNAME,
    Broker,
    Collector,
    Producer,
    make_classification,
    make_result,
)
from tests.support.synthetic import moving_person

FAST = {"reconnect_min_s": 0.1, "reconnect_max_s": 0.5, "connect_timeout_s": 3.0}


def cfg_for(broker: Broker, **extra: Any) -> MqttSection:
    return validate_mqtt({"url": broker.url, **FAST, **extra}, "test")


@pytest.fixture
def open_sink(tmp_path: Path) -> Iterator[Callable[..., MqttSink]]:
    sinks: list[MqttSink] = []

    def make(cfg: MqttSection, **kwargs: Any) -> MqttSink:
        kwargs.setdefault("device_id", "cam1")
        kwargs.setdefault("model", "ssd_mobilenet_v1")
        sink = open_mqtt_sink(
            cfg, OutboxSection(path=tmp_path / f"outbox{len(sinks)}.db"), **kwargs
        )
        sinks.append(sink)
        return sink

    yield make
    for sink in sinks:
        sink.close(2.0)


def valid(kind: str, payload: bytes) -> dict[str, Any]:
    data = json.loads(payload) if kind != "status" else payload.decode()
    jsonschema.Draft202012Validator(json_schema(kind)).validate(data)
    return data if isinstance(data, dict) else {"status": data}


def test_sink_satisfies_the_pipeline_protocol(
    broker: Broker, open_sink: Callable[..., MqttSink]
) -> None:
    assert isinstance(open_sink(cfg_for(broker)), Sink)


def test_round_trip_seq_complete_and_schema_valid(
    broker: Broker, open_sink: Callable[..., MqttSink], collector_factory: Callable[..., Collector]
) -> None:
    col = collector_factory(broker, "edgecam/cam1/#")
    sink = open_sink(cfg_for(broker), stats_interval_s=0.2, stats_provider=lambda: {"fps_in": 9.5})
    assert sink.state == "connected"
    results = [make_result(i, n=1 + i % 3) for i in range(50)]
    results.insert(10, make_result(999, n=0))  # a frame without detections: not published
    for r in results:
        sink.handle(r)
    assert col.wait_for(lambda: len(col.on("/detections")) >= 50, 10)
    assert col.wait_for(lambda: len(col.on("/stats")) >= 1, 5)
    sink.close(5.0)
    assert col.wait_for(lambda: col.on("/status")[-1].payload == b"offline", 5)

    msgs = [valid("detections", m.payload) for m in col.on("/detections")]
    assert [m["seq"] for m in msgs] == list(range(50))  # gap-free, in order, no empty frame
    assert len({m["run_id"] for m in msgs}) == 1 and msgs[0]["run_id"] == sink.run_id
    assert [len(m["detections"]) for m in msgs] == [1 + i % 3 for i in range(50)]
    assert all(not m.retain for m in col.on("/detections"))
    assert [m.payload for m in col.on("/status")] == [b"online", b"offline"]
    stats = parse_stats(valid("stats", col.on("/stats")[-1].payload))
    assert stats.pipeline == {"fps_in": 9.5} and stats.mqtt.messages_dropped == 0
    late = collector_factory(broker, "edgecam/cam1/#", client_id="late", persistent=False)
    assert late.wait_for(lambda: len(late.messages) >= 3, 5)  # retained: status, stats, count
    assert {m.topic.rsplit("/", 1)[-1]: m.retain for m in late.messages} == {
        "status": True,
        "stats": True,
        "person": True,
    }
    assert late.on("/status")[0].payload == b"offline"
    counts = [int(m.payload) for m in col.on("/count/person")]
    assert counts[0] == 1 and 0 in counts  # changes only: 1, 2, 3, 1, ..., 0 for the empty frame
    assert all(a != b for a, b in itertools.pairwise(counts))
    assert (sink.published, sink.acked, sink.dropped, sink.outbox_depth) == (
        sink.acked,
        sink.published,
        0,
        0,
    )


def test_real_pipeline_round_trip(
    broker: Broker,
    open_sink: Callable[..., MqttSink],
    collector_factory: Callable[..., Collector],
    asset_models: Path,
    asset_video: Path,
) -> None:
    """The real model on the real video, through the threaded pipeline into the sink: every
    processed frame's message arrives valid and in order; stats carry the pipeline's numbers."""
    col = collector_factory(broker, "edgecam/cam1/detections", "edgecam/cam1/stats")
    engine = open_engine(ModelSection(name="ssd_mobilenet_v1", models_dir=asset_models))
    source = open_source(str(asset_video))
    pipelines: list[Pipeline] = []
    sink = open_sink(
        cfg_for(broker, publish_empty_frames=True),
        stats_interval_s=0.2,
        stats_provider=lambda: pipelines[0].stats() if pipelines else {},
    )
    pipelines.append(Pipeline(source, engine, [sink], config=PipelineSection()))
    summary = pipelines[0].run(max_frames=25)
    source.close()
    assert summary.processed == 25
    assert col.wait_for(lambda: len(col.on("/detections")) >= 25, 10)
    msgs = [parse_detections(valid("detections", m.payload)) for m in col.on("/detections")]
    assert [m.seq for m in msgs] == list(range(25))
    assert [m.frame_seq for m in msgs] == list(range(25))  # a replay drops nothing
    assert (msgs[0].width, msgs[0].height, msgs[0].model) == (768, 432, "ssd_mobilenet_v1")
    assert msgs[0].inference_ms > 0 and msgs[0].end_to_end_ms is not None
    assert not any(d.label == "person" for d in msgs[0].detections)  # frame 0 is empty
    assert col.wait_for(lambda: any(b'"fps_in"' in m.payload for m in col.on("/stats")), 5)
    stats = [valid("stats", m.payload) for m in col.on("/stats")]
    assert max(s["pipeline"].get("processed", 0) for s in stats) > 0


def test_empty_frames_published_when_asked(
    broker: Broker, open_sink: Callable[..., MqttSink], collector_factory: Callable[..., Collector]
) -> None:
    col = collector_factory(broker, "edgecam/cam1/+")
    sink = open_sink(cfg_for(broker, publish_empty_frames=True))
    sink.handle(make_result(0, n=0))
    sink.handle(make_classification(1))
    assert col.wait_for(lambda: col.on("/classification") and col.on("/detections"), 5)
    assert valid("detections", col.on("/detections")[0].payload)["detections"] == []
    cls = valid("classification", col.on("/classification")[0].payload)
    assert cls["seq"] == 0 and cls["classification"][0]["label"] == "Egyptian cat"  # own stream


def test_events_only_publishes_no_frame_messages(
    broker: Broker, open_sink: Callable[..., MqttSink], collector_factory: Callable[..., Collector]
) -> None:
    """publish_detections = false (large fleets): events, counts and status, no per-frame
    messages."""
    col = collector_factory(broker, "edgecam/cam1/#")
    sink = open_sink(cfg_for(broker, publish_detections=False))
    engine = EventEngine(keep_frames=False)
    for s in range(10):
        sink.handle(moving_person(s))
        for event in engine.update(moving_person(s)).events:
            sink.publish_event(events_to_dict(event, "cam1"))
    assert col.wait_for(lambda: bool(col.on("/events")) and bool(col.on("/count/person")), 5)
    sink.close(2.0)
    kinds = {m.topic.split("/")[2] for m in col.messages}
    assert "detections" not in kinds and {"events", "count", "status"} <= kinds


def test_events_counts_and_snapshots(
    broker: Broker, open_sink: Callable[..., MqttSink], collector_factory: Callable[..., Collector]
) -> None:
    col = collector_factory(broker, "edgecam/cam1/#")
    sink = open_sink(cfg_for(broker, publish_counts=False))
    engine = EventEngine(keep_frames=False)
    events = [e for s in range(10) for e in engine.update(moving_person(s)).events]
    events += list(engine.flush().events)
    for e in events:
        sink.publish_event(events_to_dict(e, "ignored-device"))
    sink.publish_count("dining table", 2)
    jpeg = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 40
    assert sink.publish_snapshot("person", jpeg)
    assert col.wait_for(lambda: len(col.on("/events")) == len(events) and col.on("/person"), 5)
    got = [valid("events", m.payload) for m in col.on("/events")]
    assert [g["event"] for g in got] == [e.type for e in events] and got[0]["event"] == "new"
    assert {g["device_id"] for g in got} == {"cam1"} and [g["seq"] for g in got] == list(
        range(len(got))
    )
    assert col.wait_for(lambda: bool(col.on("/count/dining_table")), 5)
    assert col.on("/snapshot/person")[0].payload == jpeg
    late = collector_factory(broker, "edgecam/cam1/+/+", client_id="late", persistent=False)
    assert late.wait_for(lambda: len(late.messages) == 2, 5)
    retained = {m.topic: (m.payload, m.retain) for m in late.messages}
    assert retained == {
        "edgecam/cam1/count/dining_table": (b"2", True),
        "edgecam/cam1/snapshot/person": (jpeg, True),
    }


def test_snapshot_skipped_while_disconnected(tmp_path: Path) -> None:
    cfg = validate_mqtt({"url": "mqtt://127.0.0.1:1", **FAST}, "test")
    sink = open_mqtt_sink(cfg, OutboxSection(path=tmp_path / "o.db"), device_id="cam1", model="m")
    assert not sink.publish_snapshot("person", b"\xff\xd8")
    assert sink.snapshots_skipped == 1 and sink.outbox_depth == 0  # never queued on disk
    sink.close(1.0)


def test_broker_down_at_start_does_not_block(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Unreachable is not fatal: open returns at once, the outbox takes the messages."""
    cfg = validate_mqtt({"url": "mqtt://127.0.0.1:1", "publish_counts": False, **FAST}, "test")
    started = time.monotonic()
    sink = open_mqtt_sink(cfg, OutboxSection(path=tmp_path / "o.db"), device_id="cam1", model="m")
    assert time.monotonic() - started < cfg.connect_timeout_s
    for i in range(5):
        sink.handle(make_result(i))
    assert (sink.state, sink.outbox_depth) == ("disconnected", 5)
    assert "unreachable" in caplog.text
    sink.close(1.0)


# -- TLS + password ---------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def password_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The broker password reaches the sink only through the environment, as in production."""
    monkeypatch.setenv("EDGECAM_TEST_PW", PASSWORD)
    monkeypatch.setenv("EDGECAM_WRONG_PW", "not-" + PASSWORD)


def tls_cfg(broker: Broker, **extra: Any) -> MqttSection:
    assert broker.tls is not None
    table = {
        "url": broker.url,
        "ca_file": str(broker.tls.ca),
        "username": USERNAME,
        "password_env": "EDGECAM_TEST_PW",
        **FAST,
        **extra,
    }
    return validate_mqtt({k: v for k, v in table.items() if v is not None}, "test")


def test_tls_with_password_round_trip(
    tls_broker: Broker,
    open_sink: Callable[..., MqttSink],
    collector_factory: Callable[..., Collector],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # paho's own protocol log included
    col = collector_factory(tls_broker, "edgecam/cam1/#", username=USERNAME, password=PASSWORD)
    sink = open_sink(tls_cfg(tls_broker))
    assert sink.state == "connected"
    for i in range(5):
        sink.handle(make_result(i))
    assert col.wait_for(lambda: len(col.on("/detections")) == 5, 5)
    sink.close(3.0)
    assert "Sending CONNECT" in caplog.text  # the debug log really was captured
    assert PASSWORD not in caplog.text


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"password_env": "EDGECAM_WRONG_PW"}, "wrong user name or password"),
        ({"username": None, "password_env": None}, "not authorised"),  # anonymous refused
        ("other_ca", "certificate verification failed"),
        ("plain_url", "closed the connection before accepting it"),
    ],
)
def test_tls_refusals_are_fatal_at_start(
    tls_broker: Broker, tmp_path: Path, change: Any, message: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert tls_broker.tls is not None
    if change == "other_ca":
        cfg = tls_cfg(tls_broker, ca_file=str(tls_broker.tls.other_ca))
    elif change == "plain_url":
        cfg = validate_mqtt({"url": f"mqtt://127.0.0.1:{tls_broker.port}", **FAST}, "test")
    else:
        cfg = tls_cfg(tls_broker, **change)
    started = time.monotonic()
    with pytest.raises(SinkError, match=message) as info:
        open_mqtt_sink(cfg, OutboxSection(path=tmp_path / "o.db"), device_id="cam1", model="m")
    assert time.monotonic() - started < cfg.connect_timeout_s + 1  # no silent retry loop
    assert info.value.exit_code == 1
    assert PASSWORD not in str(info.value) and PASSWORD not in caplog.text
    # The outbox was released: a corrected configuration can start right away.
    unreachable = validate_mqtt({"url": "mqtt://127.0.0.1:1", **FAST}, "test")
    outbox = OutboxSection(path=tmp_path / "o.db")
    open_mqtt_sink(unreachable, outbox, device_id="cam1", model="m").close(0.5)


def test_tls_to_a_plain_port_is_fatal(broker: Broker, tmp_path: Path) -> None:
    cfg = validate_mqtt({"url": f"mqtts://127.0.0.1:{broker.port}", **FAST}, "test")
    with pytest.raises(SinkError, match="TLS handshake failed"):
        open_mqtt_sink(cfg, OutboxSection(path=tmp_path / "o.db"), device_id="cam1", model="m")


def test_password_not_in_argv_or_output_of_a_running_producer(
    tls_broker: Broker, tmp_path: Path
) -> None:
    assert tls_broker.tls is not None
    producer = Producer(
        "--url",
        tls_broker.url,
        "--outbox",
        str(tmp_path / "o.db"),
        "--count",
        "3",
        "--linger",
        "--username",
        USERNAME,
        "--password-env",
        "EDGECAM_TEST_PW",
        "--ca-file",
        str(tls_broker.tls.ca),
        env={"EDGECAM_TEST_PW": PASSWORD},
    )
    try:
        assert producer.wait_line("open", 20) == "open connected"
        producer.wait_line("done", 20)
        cmdline = Path(f"/proc/{producer.proc.pid}/cmdline").read_bytes().decode()
        assert PASSWORD not in cmdline
    finally:
        producer.kill()
    assert PASSWORD not in "\n".join(producer.lines) + producer.stderr_text()


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_every_qos_level_drains_the_outbox(
    qos: int,
    broker: Broker,
    open_sink: Callable[..., MqttSink],
    collector_factory: Callable[..., Collector],
) -> None:
    col = collector_factory(broker, "edgecam/cam1/detections")
    sink = open_sink(cfg_for(broker, qos=qos, publish_counts=False, max_inflight=4))
    for i in range(30):
        sink.handle(make_result(i))
    assert col.wait_for(lambda: len(col.messages) >= 30, 10)
    assert [json.loads(m.payload)["seq"] for m in col.messages] == list(range(30))
    deadline = time.monotonic() + 5
    while sink.outbox_depth and time.monotonic() < deadline:
        time.sleep(0.01)
    assert (sink.outbox_depth, sink.acked) == (0, 30)


def test_backoff_grows_with_jitter_and_resets() -> None:
    backoff = Backoff(0.5, 8.0, random.Random(1))
    delays = [backoff.next() for _ in range(8)]
    caps = [min(8.0, 0.5 * 2**i) for i in range(8)]
    assert all(0.5 <= d <= cap for d, cap in zip(delays, caps, strict=True))
    assert len({round(d, 6) for d in delays}) == len(delays)  # jittered, not lock-step
    assert max(delays[4:]) > 2.0  # it does grow
    backoff.reset()
    assert backoff.next() == 0.5  # first retry after a good connection: the minimum


def test_a_bug_in_the_publisher_stops_the_run_instead_of_looping_behind_a_green_watchdog(
    broker: Broker,
    open_sink: Callable[..., MqttSink],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An error the publisher does not expect (here: from the stats provider, our own code)
    is not retried every second forever: one ERROR line naming it, health `failed`, the next
    handle() and close() raise SinkError (exit status 1), and what is stored stays stored."""

    def broken() -> dict[str, Any]:
        raise RuntimeError("pipeline gone")

    sink = open_sink(cfg_for(broker), stats_provider=broken, stats_interval_s=0.1)
    deadline = time.monotonic() + 10
    while sink.health().state != "failed" and time.monotonic() < deadline:
        time.sleep(0.02)
    health = sink.health()
    assert health.state == "failed"
    assert health.problem is not None and "RuntimeError: pipeline gone" in health.problem
    assert "test_sink.py" in health.problem  # where: the one line still points at the bug
    with pytest.raises(SinkError, match="MQTT publisher stopped"):
        sink.handle(make_result(0))
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "exit status 1" in errors[0].getMessage()
    assert "restarting" not in caplog.text
    with pytest.raises(SinkError, match="MQTT publisher stopped"):
        sink.close(1.0)
