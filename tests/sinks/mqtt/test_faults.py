"""Delivery when the network fails, with a real broker that is stopped, restarted and never there.

Producer (a separate process) -> outbox -> Mosquitto -> a subscriber with a persistent session
(fixed client id, clean start off, QoS 1), so messages the broker queued while the subscriber
was away are delivered too. Every seq produced must arrive at least once (QoS 1 duplicates
are allowed and recognisable by seq), first arrivals in order. Each test is bounded by
timeouts and takes seconds.
"""

from __future__ import annotations

import json
import logging
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from edgecam.config.mqtt import validate_mqtt
from edgecam.config.outbox import OutboxSection
from edgecam.schema import parse_detections, parse_stats
from edgecam.sinks.mqtt import open_mqtt_sink
from tests.support.mosquitto import (
    Broker,
    Collector,
    Producer,
    free_port,
    make_result,
    subscribed_before_start,
)

FAST = {"reconnect_min_s": 0.1, "reconnect_max_s": 0.5, "connect_timeout_s": 3.0}


def first_arrivals(col: Collector, run_id: str | None = None) -> list[int]:
    """seq of each message the first time it arrived (duplicates removed), in arrival order."""
    seen: set[tuple[str, int]] = set()
    order = []
    for m in col.on("/detections"):
        msg = parse_detections(m.payload)
        key = (msg.run_id, msg.seq)
        if (run_id is None or msg.run_id == run_id) and key not in seen:
            seen.add(key)
            order.append(msg.seq)
    return order


def duplicates(col: Collector) -> int:
    return len(col.on("/detections")) - len(first_arrivals(col))


@pytest.mark.slow
def test_broker_restart_mid_run_loses_nothing(
    broker: Broker, tmp_path: Path, collector_factory: Callable[..., Collector]
) -> None:
    produced = 300
    col = collector_factory(broker, "edgecam/cam1/detections")
    producer = Producer(
        "--url",
        broker.url,
        "--outbox",
        str(tmp_path / "o.db"),
        "--count",
        str(produced),
        "--rate",
        "100",
    )
    try:
        assert col.wait_for(lambda: len(col.messages) >= 50, 15), producer.stderr_text()
        broker.stop()
        stopped_at = (
            int(producer.lines[-1].split()[-1]) if producer.lines[-1].startswith("produced") else 0
        )
        time.sleep(0.8)  # ~80 messages produced into the outbox while the broker is gone
        broker.start()
        assert producer.wait(30) == 0, producer.stderr_text()
    finally:
        producer.kill()
    assert producer.lines[-1] == "closed 0"  # drained before the clean close
    assert col.wait_for(lambda: len(set(first_arrivals(col))) >= produced, 20)
    order = first_arrivals(col)
    assert sorted(order) == list(range(produced))  # every seq, none missing
    assert order == sorted(order)  # and in order, duplicates aside
    print(
        f"\nbroker restart: produced {produced}, received {len(col.on('/detections'))} "
        f"({duplicates(col)} duplicates), broker stopped near seq {stopped_at}"
    )


@pytest.mark.slow
def test_sigkill_while_broker_down_then_restart_delivers_outbox(
    broker: Broker, tmp_path: Path, collector_factory: Callable[..., Collector]
) -> None:
    col = collector_factory(broker, "edgecam/cam1/detections", "edgecam/cam1/status")
    outbox = str(tmp_path / "o.db")
    first = Producer(
        "--url", broker.url, "--outbox", outbox, "--count", "100", "--rate", "200", "--linger"
    )
    try:
        run_a = first.wait_line("run_id", 20).split()[1]
        assert col.wait_for(lambda: len(col.on("/detections")) >= 20, 15), first.stderr_text()
        broker.stop()
        first.wait_line("done", 20)
        first.kill()  # SIGKILL: no clean close, nothing flushed beyond the outbox commits
        assert first.proc.returncode == -9
    finally:
        first.kill()
    broker.start()
    second = Producer("--url", broker.url, "--outbox", outbox, "--count", "10", "--rate", "100")
    try:
        run_b = second.wait_line("run_id", 20).split()[1]
        assert second.wait(30) == 0, second.stderr_text()
    finally:
        second.kill()
    assert run_a != run_b  # the restart is visible to subscribers
    assert col.wait_for(lambda: len(first_arrivals(col, run_b)) >= 10, 20)
    assert sorted(first_arrivals(col, run_a)) == list(range(100))
    assert sorted(first_arrivals(col, run_b)) == list(range(10))
    runs = [parse_detections(m.payload).run_id for m in col.on("/detections")]
    assert runs.index(run_b) > max(i for i, r in enumerate(runs) if r == run_a)  # old rows first
    assert second.lines[-1] == "closed 0"


def test_broker_never_reachable_fills_outbox_to_cap_and_counts_drops(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, collector_factory: Callable[..., Collector]
) -> None:
    port = free_port()  # nothing listens here yet
    (tmp_path / "late").mkdir()
    late = Broker(tmp_path / "late", port=port)
    col = subscribed_before_start(late, collector_factory, "edgecam/cam1/#")
    cfg = validate_mqtt({"url": f"mqtt://127.0.0.1:{port}", "publish_counts": False, **FAST}, "t")
    caplog.set_level(logging.WARNING)
    sink = open_mqtt_sink(
        cfg,
        OutboxSection(path=tmp_path / "o.db", max_messages=20),
        device_id="cam1",
        model="m",
        stats_interval_s=0.2,
    )
    for i in range(50):
        sink.handle(make_result(i))
    assert (sink.state, sink.outbox_depth, sink.dropped) == ("disconnected", 20, 30)
    assert "dropped the 1 oldest" in caplog.text  # logged, not silent
    # The broker finally appears on that port: exactly the newest 20 arrive, the drop is reported.
    late.start()
    try:
        assert col.wait_for(lambda: len(col.on("/detections")) >= 20, 15)
        assert col.wait_for(lambda: bool(col.on("/stats")), 5)
        assert first_arrivals(col) == list(range(30, 50))
        stats = parse_stats(col.on("/stats")[-1].payload)
        assert (stats.mqtt.messages_dropped, stats.mqtt.messages_dropped_total) == (30, 30)
        sink.close(3.0)
    finally:
        late.stop()


def test_last_will_marks_a_killed_producer_offline(
    broker: Broker, tmp_path: Path, collector_factory: Callable[..., Collector]
) -> None:
    col = collector_factory(broker, "edgecam/cam1/status", persistent=False)
    producer = Producer(
        "--url", broker.url, "--outbox", str(tmp_path / "o.db"), "--count", "1", "--linger"
    )
    try:
        producer.wait_line("done", 20)
        assert col.wait_for(lambda: [m.payload for m in col.messages] == [b"online"], 5)
    finally:
        producer.kill()
    assert col.wait_for(lambda: [m.payload for m in col.messages] == [b"online", b"offline"], 5)


def test_reconnect_is_counted_and_stats_resume(
    broker: Broker, tmp_path: Path, collector_factory: Callable[..., Collector]
) -> None:
    cfg = validate_mqtt({"url": broker.url, **FAST}, "t")
    sink = open_mqtt_sink(
        cfg, OutboxSection(path=tmp_path / "o.db"), device_id="cam1", model="m", stats_interval_s=60
    )
    try:
        broker.stop()
        deadline = time.monotonic() + 5
        while sink.state == "connected" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sink.state == "disconnected"
        broker.start()
        col = collector_factory(broker, "edgecam/cam1/stats", persistent=False)

        # Stats are re-published on reconnect (not only every 60 s).
        def reconnects() -> list[int]:
            return [json.loads(m.payload)["mqtt"]["reconnects"] for m in col.messages]

        assert col.wait_for(lambda: 1 in reconnects(), 10), reconnects()
        assert sink.reconnects == 1
    finally:
        sink.close(2.0)


def test_unconfirmed_offline_at_stop_falls_back_to_the_last_will(
    broker: Broker,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    collector_factory: Callable[..., Collector],
) -> None:
    """A clean DISCONNECT suppresses the Last Will: if the broker (frozen here) does not confirm
    the retained `offline` in time, the sink disconnects with reason 0x04 (send the Will)."""
    cfg = validate_mqtt({"url": broker.url, **FAST}, "t")
    sink = open_mqtt_sink(cfg, OutboxSection(path=tmp_path / "o.db"), device_id="cam1", model="m")
    assert broker.proc is not None
    broker.proc.send_signal(signal.SIGSTOP)
    try:
        sink.close(0.5)
    finally:
        broker.proc.send_signal(signal.SIGCONT)
    assert "did not confirm the 'offline' status" in caplog.text
    late = collector_factory(broker, "edgecam/cam1/status", persistent=False)
    assert late.wait_for(lambda: [m.payload for m in late.messages][-1:] == [b"offline"], 10)
