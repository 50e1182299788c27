"""MQTT 5 and 3.1.1, and brokers that speak only one of them.

`mqtt.protocol = "auto"` sends an MQTT 5 CONNECT first. A broker that knows only 3.1.1 closes
the connection without a CONNACK (RabbitMQ 3.x) or answers CONNACK return code 1 (older
brokers); paho reports the first exactly like a connection that died, so edgecam asks the same
node again at once in 3.1.1, keeps 3.1.1 for the rest of the run (reconnects included) and
says so once. The 3.1.1-only broker here is a relay in front of a real Mosquitto that answers
v5 CONNECTs the way those brokers do (tests/support/mqtt_relay.py); the RabbitMQ cluster test
(test_cluster.py) shows it on the real thing.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edgecam.config.mqtt import MqttSection, validate_mqtt
from edgecam.config.outbox import OutboxSection
from edgecam.errors import SinkError
from edgecam.schema import parse_detections, parse_stats
from edgecam.sinks.mqtt import MqttSink, open_mqtt_sink
from tests.support.mosquitto import Broker, Collector, make_result
from tests.support.mqtt_relay import Relay, V5Answer

FAST = {"reconnect_min_s": 0.1, "reconnect_max_s": 0.5, "connect_timeout_s": 3.0}
FALLBACK_LINE = "does not speak MQTT 5"


@pytest.fixture
def cam1(broker: Broker, collector_factory: Callable[..., Collector]) -> Collector:
    """Everything device cam1 publishes, read straight from Mosquitto."""
    return collector_factory(broker, "edgecam/cam1/#", persistent=False)


def cfg(url: str, **extra: Any) -> MqttSection:
    return validate_mqtt({"url": url, **FAST, **extra}, "test")


def sink_at(url: str, tmp_path: Path, **extra: Any) -> MqttSink:
    return open_mqtt_sink(
        cfg(url, **extra),
        OutboxSection(path=tmp_path / "o.db"),
        device_id="cam1",
        model="m",
        stats_interval_s=0.2,
    )


def wait(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.mark.parametrize("answer", ["close", "connack"])
def test_auto_falls_back_to_311_once_and_keeps_it_across_reconnects(
    relays: Callable[..., Relay],
    answer: V5Answer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    cam1: Collector,
) -> None:
    caplog.set_level(logging.INFO)
    col = cam1
    relay = relays(answer)
    sink = sink_at(relay.url, tmp_path)
    assert (sink.state, sink.link.protocol) == ("connected", "3.1.1")
    for i in range(10):
        sink.handle(make_result(i))
    relay.kill()  # the node dies; it comes back, and the sink reconnects in 3.1.1 directly
    assert wait(lambda: sink.state == "disconnected", 5)
    relay.start()
    assert wait(lambda: sink.state == "connected", 10)
    for i in range(10, 20):
        sink.handle(make_result(i))
    sink.close(5.0)
    assert col.wait_for(lambda: len(col.on("/detections")) >= 20, 10)
    assert sorted({parse_detections(m.payload).seq for m in col.on("/detections")}) == list(
        range(20)
    )
    assert relay.connects == [5, 4, 4]  # asked in 5 once, then 3.1.1 only
    assert caplog.text.count(FALLBACK_LINE) == 1
    why = "without a CONNACK" if answer == "close" else "unsupported protocol version"
    assert why in caplog.text
    stats = [parse_stats(m.payload) for m in col.on("/stats")]
    assert {s.mqtt.protocol for s in stats} == {"3.1.1"}
    assert stats[-1].mqtt.broker == relay.url


def test_a_broker_that_speaks_5_is_used_in_5(
    relays: Callable[..., Relay], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    relay = relays()
    sink = sink_at(relay.url, tmp_path)
    sink.close(2.0)
    assert (sink.link.protocol, relay.connects) == ("5", [5])
    assert FALLBACK_LINE not in caplog.text


def test_protocol_311_never_asks_in_5_and_the_session_stays(
    relays: Callable[..., Relay], tmp_path: Path, caplog: pytest.LogCaptureFixture, cam1: Collector
) -> None:
    """3.1.1's persistent session is the clean-session flag off: the broker keeps the session
    across a reconnect (session present), as MQTT 5's session expiry does."""
    caplog.set_level(logging.INFO)
    relay = relays("close")
    sink = sink_at(relay.url, tmp_path, protocol="3.1.1")
    relay.kill()
    relay.start()
    assert wait(lambda: sink.reconnects == 1, 10)
    sink.close(2.0)
    assert relay.connects == [4, 4]
    assert "(MQTT 3.1.1, session present: False)" in caplog.text
    assert "(MQTT 3.1.1, session present: True)" in caplog.text
    assert cam1.wait_for(lambda: [m.payload for m in cam1.on("/status")][-1:] == [b"offline"], 5)


@pytest.mark.parametrize(
    ("answer", "message", "hint"),
    [
        ("close", "closed the connection before accepting it (MQTT 5)", "speaks only MQTT 3.1.1"),
        ("connack", "does not support MQTT v5", 'mqtt.protocol = "auto"'),
    ],
)
def test_protocol_5_against_a_311_broker_is_fatal_with_the_right_hint(
    relays: Callable[..., Relay],
    tmp_path: Path,
    answer: V5Answer,
    message: str,
    hint: str,
) -> None:
    relay = relays(answer)
    with pytest.raises(SinkError, match=re.escape(message)) as info:
        sink_at(relay.url, tmp_path, protocol="5")
    assert info.value.hint is not None and hint in info.value.hint
    assert relay.connects == [5]


def test_closed_in_both_versions_names_both_and_the_likely_causes(tmp_path: Path) -> None:
    """A peer that closes on any CONNECT (a relay to a port where nothing listens): not a
    version matter, and the message says so instead of blaming one cause."""
    relay = Relay(1)
    relay.start()
    try:
        with pytest.raises(SinkError) as info:
            sink_at(relay.url, tmp_path)
    finally:
        relay.kill()
    assert "closed the connection before accepting it, in MQTT 5 and in 3.1.1" in str(info.value)
    assert info.value.hint is not None and "TLS port" in info.value.hint
    assert relay.connects == [5, 4]


def test_a_311_broker_that_appears_later_is_found_in_the_background(
    broker: Broker,
    tmp_path: Path,
    collector_factory: Callable[..., Collector],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Down at start (cameras often boot before the broker): the outbox buffers, and the
    version is settled on the first answer, whenever it comes."""
    caplog.set_level(logging.INFO)
    col = collector_factory(broker, "edgecam/cam1/detections")
    relay = Relay(broker.port, v5="close")
    relay.start()
    relay.kill()  # keep its port, listen later
    sink = sink_at(relay.url, tmp_path)
    try:
        assert sink.state == "disconnected"
        for i in range(5):
            sink.handle(make_result(i))
        relay.start()
        assert wait(lambda: sink.state == "connected", 10)
        assert col.wait_for(lambda: len(col.on("/detections")) >= 5, 10)
    finally:
        sink.close(2.0)
        relay.kill()
    assert sink.link.protocol == "3.1.1" and relay.connects[:2] == [5, 4]
    assert caplog.text.count(FALLBACK_LINE) == 1
    assert json.loads(col.on("/detections")[0].payload)["seq"] == 0


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_a_stop_whose_offline_is_not_confirmed_leaves_with_the_last_will(
    relays: Callable[..., Relay], tmp_path: Path, cam1: Collector, protocol: str
) -> None:
    """The retained `offline` of a clean stop is swallowed here (its PUBACK never comes), so the
    sink must leave in a way that makes the broker send the Last Will. MQTT 5 says so in its
    DISCONNECT (reason 0x04); 3.1.1 has no such reason and any DISCONNECT discards the Will, so
    the connection is closed without one."""
    relay = relays()
    sink = sink_at(relay.url, tmp_path, protocol=protocol)

    def status() -> list[bytes]:
        return [m.payload for m in cam1.on("/status")]

    assert cam1.wait_for(lambda: status() == [b"online"], 5)
    relay.drop = "publish"
    sink.close(0.5)
    assert cam1.wait_for(lambda: status() == [b"online", b"offline"], 5), status()
