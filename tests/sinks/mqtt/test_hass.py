"""Home Assistant MQTT discovery: the pure config builder, and the exchange with a real broker.

On connect the sink publishes one retained sensor config per known label under
`homeassistant/sensor/<node>/<label>_count/config`; a label seen for the first time is
announced then; when Home Assistant restarts it publishes `homeassistant/status` = `online`
and every config is sent again. Each sensor's state_topic carries retained counts and its
availability_topic is the device status (online / Last Will offline).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from edgecam.config.homeassistant import HomeAssistantSection
from edgecam.config.mqtt import validate_mqtt
from edgecam.config.outbox import OutboxSection
from edgecam.core import hass
from edgecam.sinks.mqtt import MqttSink, open_mqtt_sink
from tests.support.mosquitto import Broker, Collector, make_result


def test_count_sensor_config() -> None:
    topic, config = hass.count_sensor(
        discovery_prefix="homeassistant",
        topic_prefix="edgecam",
        device_id="garage.pi",
        label="dining table",
        model="ssd_mobilenet_v1",
        version="0.1.0",
    )
    assert topic == "homeassistant/sensor/edgecam_garage_pi/dining_table_count/config"
    assert config["state_topic"] == "edgecam/garage.pi/count/dining_table"
    assert config["availability_topic"] == "edgecam/garage.pi/status"
    assert (config["payload_available"], config["payload_not_available"]) == ("online", "offline")
    assert config["unique_id"] == "edgecam_garage_pi_dining_table_count"
    assert config["device"]["identifiers"] == ["edgecam_garage_pi"]
    assert config["name"] == "dining table count" and config["state_class"] == "measurement"
    json.dumps(config)


def test_unique_ids_differ_per_device_and_label() -> None:
    ids = {
        hass.count_sensor(
            discovery_prefix="ha", topic_prefix="e", device_id=d, label=lab, model="m", version="v"
        )[1]["unique_id"]
        for d in ("cam1", "cam2")
        for lab in ("person", "car")
    }
    assert len(ids) == 4


@pytest.fixture
def hass_sink(broker: Broker, tmp_path: Path) -> Iterator[MqttSink]:
    cfg = validate_mqtt({"url": broker.url, "reconnect_min_s": 0.1}, "test")
    sink = open_mqtt_sink(
        cfg,
        OutboxSection(path=tmp_path / "o.db"),
        device_id="cam1",
        model="ssd_mobilenet_v1",
        homeassistant=HomeAssistantSection(enabled=True, labels=("person",)),
    )
    yield sink
    sink.close(2.0)


def configs(col: Collector) -> list[tuple[str, dict[str, str]]]:
    return [(m.topic, json.loads(m.payload)) for m in col.on("/config")]


def test_discovery_announce_first_seen_and_reannounce(
    broker: Broker, hass_sink: MqttSink, collector_factory: Callable[..., Collector]
) -> None:
    col = collector_factory(broker, "homeassistant/#", "edgecam/cam1/count/+", persistent=False)
    assert col.wait_for(lambda: len(configs(col)) == 1, 5)  # retained, from the connect
    topic, person = configs(col)[0]
    assert topic == "homeassistant/sensor/edgecam_cam1/person_count/config"
    assert col.on("/config")[0].retain

    hass_sink.handle(make_result(0, n=2, label="car"))  # first car: announced, count published
    assert col.wait_for(lambda: len(configs(col)) == 2 and bool(col.on("/count/car")), 5)
    car = dict(configs(col))["homeassistant/sensor/edgecam_cam1/car_count/config"]
    assert col.on(car["state_topic"])[0].payload == b"2"

    ha = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
    ha.connect(broker.host, broker.port)
    ha.loop_start()
    ha.publish("homeassistant/status", "online", qos=1).wait_for_publish(5)  # HA restarted
    ha.disconnect()
    ha.loop_stop()
    assert col.wait_for(lambda: len(configs(col)) == 4, 5)
    assert sorted(t for t, _ in configs(col)[2:]) == sorted(t for t, _ in configs(col)[:2])
    assert person["availability_topic"] == "edgecam/cam1/status"
