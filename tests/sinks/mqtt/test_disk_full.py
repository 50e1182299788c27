"""The outbox on a genuinely full file system (a tmpfs filled to the last block), a real
Mosquitto and the real MqttSink.

Exchange checked: with the broker connected, every message produced after the disk filled
still arrives (QoS 1, held in memory until its PUBACK); acknowledged rows that SQLite cannot
delete are not sent again by the next start; while the broker is also away, what memory
cannot hold is lost, counted in `stats` and logged with totals; start-up on a full disk
delivers live instead of failing, and its advice keeps the queued messages; a stop with
messages neither delivered nor stored says so and fails.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edgecam.config.mqtt import MqttSection, validate_mqtt
from edgecam.config.outbox import OutboxSection
from edgecam.errors import SinkError
from edgecam.schema import parse_detections
from edgecam.sinks.mqtt import MqttSink, open_mqtt_sink
from tests.support.fullfs import FullFs
from tests.support.mosquitto import (
    Broker,
    Collector,
    free_port,
    make_result,
    subscribed_before_start,
)

FAST = {"reconnect_min_s": 0.1, "reconnect_max_s": 0.5, "connect_timeout_s": 3.0}


def cfg_for(url: str) -> MqttSection:
    return validate_mqtt({"url": url, "publish_counts": False, **FAST}, "test")


def seqs(col: Collector, run_id: str) -> list[int]:
    """seq of every detections message of `run_id` received, duplicates included."""
    out = []
    for m in col.on("/detections"):
        msg = parse_detections(m.payload)
        if msg.run_id == run_id:
            out.append(msg.seq)
    return out


@pytest.fixture
def sinks() -> Iterator[list[MqttSink]]:
    made: list[MqttSink] = []
    yield made
    for sink in made:
        with contextlib.suppress(SinkError):  # a test expecting the loss has checked it
            sink.close(2.0)


def open_sink(made: list[MqttSink], url: str, outbox: Path, **outbox_cfg: Any) -> MqttSink:
    sink = open_mqtt_sink(
        cfg_for(url),
        OutboxSection(path=outbox, **outbox_cfg),
        device_id="cam1",
        model="ssd_mobilenet_v1",
        stats_interval_s=0.5,
    )
    made.append(sink)
    return sink


def test_full_disk_with_the_broker_up_still_delivers_every_message(
    full_fs: FullFs,
    broker: Broker,
    sinks: list[MqttSink],
    collector_factory: Callable[..., Collector],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    col = collector_factory(broker, "edgecam/cam1/detections")
    sink = open_sink(sinks, broker.url, full_fs.root / "outbox.sqlite3")
    for i in range(10):
        sink.handle(make_result(i))
    assert col.wait_for(lambda: len(set(seqs(col, sink.run_id))) == 10, 10)
    full_fs.fill()
    produced = 310
    for i in range(10, produced):
        sink.handle(make_result(i))
        time.sleep(0.002)  # ~ a fast camera: the publisher runs alongside
    col.wait_for(lambda: len(set(seqs(col, sink.run_id))) >= produced, 20)
    got = sorted(set(seqs(col, sink.run_id)))
    print(f"\ndisk full, broker up: delivered {len(got)}/{produced}")
    assert got == list(range(produced))
    counters = sink.counters()
    assert counters["health"] == "degraded" and "disk is full" in counters["problem"]
    assert counters["messages_dropped"] == 0  # nothing lost: the broker took it all
    assert "MQTT publisher failed" not in caplog.text and "Traceback" not in caplog.text
    # Said once, at ERROR. Which write fails first (storing a new message or deleting an
    # acknowledged one) depends on who reaches the last free block: either names the disk.
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    assert "disk is full" in errors[0] and "outbox.memory_max_messages" in errors[0]
    sink.close(5.0)  # nothing left to deliver: returns at once, no SinkError
    assert sink.outbox_depth == 0


def test_next_start_on_a_full_disk_delivers_live_and_does_not_resend_delivered_rows(
    full_fs: FullFs,
    tmp_path: Path,
    sinks: list[MqttSink],
    collector_factory: Callable[..., Collector],
    caplog: pytest.LogCaptureFixture,
) -> None:
    (tmp_path / "b").mkdir()
    broker = Broker(tmp_path / "b")  # not running yet: the first run queues on disk
    col = subscribed_before_start(broker, collector_factory, "edgecam/cam1/detections")
    outbox = full_fs.root / "outbox.sqlite3"
    first = open_sink(sinks, broker.url, outbox)
    for i in range(50):
        first.handle(make_result(i))
    assert first.outbox_depth == 50
    full_fs.fill()
    broker.start()
    try:
        # The backlog goes out; SQLite cannot delete the acknowledged rows.
        assert col.wait_for(lambda: len(set(seqs(col, first.run_id))) == 50, 15)
        deadline = time.monotonic() + 10
        while first.outbox_depth and time.monotonic() < deadline:
            time.sleep(0.05)
        assert first.outbox_depth == 0  # done, even though still in the file
        first.close(3.0)
        caplog.clear()
        second = open_sink(sinks, broker.url, outbox)  # same full disk
        for i in range(100):
            second.handle(make_result(i))
        assert col.wait_for(lambda: len(set(seqs(col, second.run_id))) == 100, 15)
        time.sleep(0.5)  # anything re-sent from the old rows would be here by now
        assert len(seqs(col, first.run_id)) == 50  # not one delivered row sent again
        assert "move" not in caplog.text  # no advice that throws the backlog away
        second.close(3.0)
    finally:
        broker.stop()


@pytest.mark.slow  # waits for the 5 s retry
def test_broker_away_and_disk_full_counts_and_logs_the_loss_then_recovers(
    full_fs: FullFs,
    tmp_path: Path,
    sinks: list[MqttSink],
    collector_factory: Callable[..., Collector],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Memory holds `memory_max_messages` while both fail; the rest is lost, counted in stats
    and logged with totals; when the broker returns memory goes out; when space returns the
    outbox works again (health ok) and keeps what memory still held."""
    (tmp_path / "b").mkdir()
    broker = Broker(tmp_path / "b")
    col = subscribed_before_start(broker, collector_factory, "edgecam/cam1/detections")
    sink = open_sink(sinks, broker.url, full_fs.root / "o.sqlite3", memory_max_messages=40)
    full_fs.fill()
    for i in range(100):
        sink.handle(make_result(i))
    counters = sink.counters()
    assert counters["health"] == "degraded"
    assert (counters["memory_depth"], counters["messages_dropped"]) == (40, 60)
    assert counters["messages_dropped_total"] == 60
    # The first loss is logged at once, later ones summed up at most every 10 s.
    assert "lost 1 message(s)" in caplog.text and "memory holds 40" in caplog.text
    broker.start()
    try:
        assert col.wait_for(lambda: len(set(seqs(col, sink.run_id))) == 40, 15)
        assert sorted(set(seqs(col, sink.run_id))) == list(range(60, 100))  # newest kept
        broker.stop()
        deadline = time.monotonic() + 10
        while sink.state == "connected" and time.monotonic() < deadline:
            time.sleep(0.02)  # else the publisher may hand some to paho's RAM queue first
        for i in range(100, 110):
            sink.handle(make_result(i))
        full_fs.free_up()
        deadline = time.monotonic() + 15
        while sink.health().state != "ok" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sink.health().state == "ok"
        assert "works again" in caplog.text and "10 moved from memory" in caplog.text
        assert sink.counters()["memory_depth"] == 0  # the 10 are on disk now
        sink.close(1.0)  # broker away: they stay in the outbox, nothing lost at stop
    finally:
        broker.stop()
    assert "60 message(s) lost this run (0 at this stop)" in caplog.text  # the total, at ERROR
    again = open_sink(sinks, broker.url, full_fs.root / "o.sqlite3")
    assert again.counters()["messages_dropped_total"] == 60  # persisted once it could write
    rows = again.queue.take(100)
    assert sorted(parse_detections(r.payload).seq for r in rows) == list(range(100, 110))


def test_stop_with_messages_only_memory_holds_fails_and_says_how_many(
    full_fs: FullFs, sinks: list[MqttSink]
) -> None:
    sink = open_sink(sinks, f"mqtt://127.0.0.1:{free_port()}", full_fs.root / "o.sqlite3")
    full_fs.fill()
    for i in range(7):
        sink.handle(make_result(i))
    with pytest.raises(SinkError, match="7 message"):
        sink.close(0.5)


def test_start_on_a_full_disk_without_an_outbox_delivers_from_memory(
    full_fs: FullFs,
    broker: Broker,
    sinks: list[MqttSink],
    collector_factory: Callable[..., Collector],
    caplog: pytest.LogCaptureFixture,
) -> None:
    full_fs.fill()
    col = collector_factory(broker, "edgecam/cam1/detections")
    sink = open_sink(sinks, broker.url, full_fs.root / "new.sqlite3")
    for i in range(20):
        sink.handle(make_result(i))
    assert col.wait_for(lambda: len(set(seqs(col, sink.run_id))) == 20, 10)
    assert sink.health().state == "degraded"
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors and "cannot open it" in errors[0] and "free space" in errors[0]
    assert not any("move" in e for e in errors)
    sink.close(3.0)


def test_stop_keeps_unacknowledged_memory_messages_once_the_disk_has_room(
    full_fs: FullFs, broker: Broker, sinks: list[MqttSink]
) -> None:
    """Messages held in memory and handed to a broker that froze (no PUBACK) are not lost at
    a stop if the outbox can take them by then: they are stored for the next start."""
    sink = open_sink(sinks, broker.url, full_fs.root / "o.sqlite3")
    full_fs.fill()
    assert broker.proc is not None
    broker.proc.send_signal(signal.SIGSTOP)
    try:
        for i in range(5):
            sink.handle(make_result(i))
        deadline = time.monotonic() + 10
        while sink.published < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sink.published == 5 and sink.counters()["memory_depth"] == 5
        full_fs.free_up()
        sink.close(0.5)  # no SinkError: nothing lost
    finally:
        broker.proc.send_signal(signal.SIGCONT)
    again = open_sink(sinks, f"mqtt://127.0.0.1:{free_port()}", full_fs.root / "o.sqlite3")
    rows = again.queue.take(10)
    assert [parse_detections(r.payload).seq for r in rows] == list(range(5))
