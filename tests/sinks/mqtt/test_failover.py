"""Failover between the nodes of one broker, in seconds: two relays in front of one Mosquitto.

The relays are two "nodes" sharing one broker's state (tests/support/mqtt_relay.py), and a
collector reads Mosquitto itself. The sink is given `url = [A, B]`. When A stops answering
and then dies like a SIGKILLed node, the sink moves to B after one backoff delay and the
messages A never acknowledged are sent again there: every seq arrives, duplicates allowed
and recognisable by seq. A node that is dead at start is skipped; a node that comes back does
not pull the device back. test_cluster.py does the same against a real RabbitMQ cluster.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edgecam.config.mqtt import validate_mqtt
from edgecam.config.outbox import OutboxSection
from edgecam.schema import parse_detections
from edgecam.sinks.mqtt import MqttSink, open_mqtt_sink
from tests.support.mosquitto import Broker, Collector, make_result
from tests.support.mqtt_relay import Relay

FAST = {"reconnect_min_s": 0.1, "reconnect_max_s": 0.5, "connect_timeout_s": 3.0}


def sink_at(urls: list[str], tmp_path: Path, **extra: Any) -> MqttSink:
    cfg = validate_mqtt({"url": urls, "publish_counts": False, **FAST, **extra}, "test")
    box = OutboxSection(path=tmp_path / "o.db")
    return open_mqtt_sink(cfg, box, device_id="cam1", model="m")


def wait(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def seqs(col: Collector) -> list[int]:
    return [parse_detections(m.payload).seq for m in col.on("/detections")]


@pytest.fixture
def detections(broker: Broker, collector_factory: Callable[..., Collector]) -> Collector:
    return collector_factory(broker, "edgecam/cam1/detections")


def dead_relay(broker: Broker) -> Relay:
    """A node address where nothing listens (yet): start() brings it up."""
    relay = Relay(broker.port)
    relay.start()
    relay.kill()
    return relay


def test_a_dying_node_moves_the_device_and_unacknowledged_messages_follow(
    relays: Callable[..., Relay],
    tmp_path: Path,
    detections: Collector,
    caplog: pytest.LogCaptureFixture,
) -> None:
    a, b = relays(), relays()
    sink = sink_at([a.url, b.url], tmp_path)
    assert sink.link.where == a.url
    for i in range(50):
        sink.handle(make_result(i))
    assert wait(lambda: sink.outbox_depth == 0, 10)
    a.drop = "all"  # A stops answering: what is sent now waits for a PUBACK that never comes
    for i in range(50, 80):
        sink.handle(make_result(i))
    window = sink.cfg.max_inflight
    assert wait(lambda: sink.published - sink.acked == window, 10)  # paho holds them
    a.kill()  # ... and dies
    assert wait(lambda: sink.state == "connected" and sink.link.where == b.url, 10)
    for i in range(80, 100):
        sink.handle(make_result(i))
    sink.close(5.0)
    assert detections.wait_for(lambda: set(seqs(detections)) >= set(range(100)), 10)
    got = seqs(detections)
    assert sorted(set(got)) == list(range(100))  # the 20 A swallowed came again, through B
    assert (sink.reconnects, sink.link.failovers, sink.dropped) == (1, 1, 0)
    assert f"MQTT connection to {a.url} lost" in caplog.text
    assert f"next attempt: {b.url}" in caplog.text
    print(f"\nfailover: 100 messages, {len(got) - 100} duplicate(s)")


def test_a_dead_node_at_start_is_skipped_and_a_node_that_returns_does_not_pull_back(
    broker: Broker,
    relays: Callable[..., Relay],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    a, b = dead_relay(broker), relays()
    sink = sink_at([a.url, b.url], tmp_path)
    try:
        assert (sink.state, sink.link.where) == ("connected", b.url)
        assert f"{a.url}: cannot reach the MQTT broker" in caplog.text
        assert f"using {b.url} instead" in caplog.text
        a.start()
        sink.handle(make_result(0))
        assert wait(lambda: sink.outbox_depth == 0, 5)
        assert (sink.link.where, sink.reconnects) == (b.url, 0)
    finally:
        sink.close(2.0)
        a.kill()


def test_with_every_node_down_the_outbox_buffers_until_any_node_answers(
    broker: Broker, tmp_path: Path, detections: Collector, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = dead_relay(broker), dead_relay(broker)
    sink = sink_at([a.url, b.url], tmp_path)
    try:
        assert sink.state == "disconnected"
        assert f"{a.url}: cannot reach" in caplog.text and f"{b.url}: cannot reach" in caplog.text
        for i in range(5):
            sink.handle(make_result(i))
        b.start()  # only the second node comes up: the rotation finds it
        assert wait(lambda: sink.state == "connected", 10)
        assert sink.link.where == b.url
        assert detections.wait_for(lambda: sorted(seqs(detections)) == list(range(5)), 10)
    finally:
        sink.close(2.0)
        b.kill()


def test_one_bad_node_in_the_list_does_not_stop_the_others(
    broker: Broker, relays: Callable[..., Relay], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A node address that is not an MQTT port (every CONNECT closed) is a warning while
    another node works, or may come up, not a refusal to start."""
    caplog.set_level(logging.WARNING)
    bad = Relay(1)  # relays to a port where nothing listens: closes every connection
    bad.start()
    later = dead_relay(broker)
    try:
        sink = sink_at([bad.url, later.url], tmp_path)  # one node broken, the other down
        assert sink.state == "disconnected"
        later.start()
        assert wait(lambda: sink.state == "connected", 10)
        sink.close(1.0)
        good = relays()
        sink = sink_at([bad.url, good.url], tmp_path)
        sink.close(1.0)
    finally:
        bad.kill()
        later.kill()
    assert sink.link.where == good.url
    assert f"{bad.url}: the broker closed the connection before accepting it" in caplog.text
