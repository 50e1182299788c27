"""Home Assistant over a real Mosquitto: what a Home Assistant instance sees from one camera.

On connect the sink publishes every discovery config (retained) under
`homeassistant/<platform>/edgecam_cam1/<key>/config`, then the current state of every
occupancy/count topic (0 / OFF for announced labels nobody is in) and of the switches. Tracked
events (the dicts the events sink hands over) turn into retained occupancy/count changes and
non-retained HA event messages, per camera and per zone. When HA restarts it publishes `online`
on `homeassistant/status` and every config is sent again. A retained config of this camera
that the config no longer asks for is cleared (empty retained payload) at connect; a config
the user deleted in HA stays deleted until the next connect or HA restart.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from edgecam.config.mqtt import validate_mqtt
from edgecam.config.outbox import OutboxSection
from edgecam.config.root import EdgecamConfig
from edgecam.core import hass
from edgecam.errors import ConfigError
from edgecam.sinks.mqtt import MqttSink, open_mqtt_sink
from edgecam.sinks.mqtt_commands import Controls
from edgecam.sinks.mqtt_hass import HassSetup, plan_hass
from tests.support.mosquitto import Broker, Collector

CAM = hass.Camera(
    device_id="cam1",
    model="ssd_mobilenet_v1",
    version="9.9.9",
    labels=("person", "car"),
    zones=(hass.ZoneSpec("driveway", ("person", "car")),),
    snapshots=True,
)
ENTITIES = hass.entities(CAM)
SinkFactory = Callable[..., MqttSink]


def publish(broker: Broker, topic: str, payload: bytes | str, *, retain: bool = False) -> None:
    """One message from another client (Home Assistant, a user), confirmed by the broker."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
    client.connect(broker.host, broker.port)
    client.loop_start()
    client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


@pytest.fixture
def sink_factory(broker: Broker, tmp_path: Path) -> Iterator[Callable[..., MqttSink]]:
    sinks: list[MqttSink] = []

    def make(camera: hass.Camera = CAM, controls: Controls | None = None) -> MqttSink:
        cfg = validate_mqtt({"url": broker.url, "reconnect_min_s": 0.1}, "test")
        sink = open_mqtt_sink(
            cfg,
            OutboxSection(path=tmp_path / f"o{len(sinks)}.db"),
            device_id=camera.device_id,
            model=camera.model,
            homeassistant=HassSetup(camera, controls),
        )
        sinks.append(sink)
        return sink

    yield make
    for sink in sinks:
        sink.close(2.0)


def configs(col: Collector) -> dict[str, dict[str, Any]]:
    """Latest config per discovery topic ({} when cleared)."""
    return {m.topic: json.loads(m.payload) if m.payload else {} for m in col.on("/config")}


def values(col: Collector, topic: str) -> list[bytes]:
    with col._cond:
        return [m.payload for m in col.messages if m.topic == topic]


def last(col: Collector, topic: str) -> bytes | None:
    found = values(col, topic)
    return found[-1] if found else None


def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def event(kind: str, track: str, label: str, zones: list[str]) -> dict[str, Any]:
    """A tracker event as edgecam.core.events.events_to_dict writes it."""
    box = {"xmin": 0.1, "ymin": 0.2, "xmax": 0.4, "ymax": 0.9}
    box_px = {"xmin": 64, "ymin": 96, "xmax": 256, "ymax": 432}
    return {
        "schema": 1,
        "type": "event",
        "event": kind,
        "event_id": f"{track}:{kind}:{len(zones)}",
        "device_id": "cam1",
        "run_id": "r",
        "model": "ssd_mobilenet_v1",
        "seq": None,
        "frame_seq": 1,
        "track_id": track,
        "label": label,
        "class_id": 0,
        "score": 0.7,
        "best_score": 0.8,
        "first_seen": 1700000000.0,
        "first_seen_at": "2023-11-14T22:13:20.000Z",
        "last_seen": 1700000000.0,
        "last_seen_at": "2023-11-14T22:13:20.000Z",
        "duration_s": 0.0,
        "frame": {"width": 640, "height": 480},
        "box": box,
        "box_px": box_px,
        "zones": zones,
        "entered": [],
        "left": [],
        "reasons": {"new": ["confirmed"], "end": ["gone"]}.get(kind, ["entered_zone"]),
        "best": {
            "frame_seq": 1,
            "time": 1700000000.0,
            "time_at": "2023-11-14T22:13:20.000Z",
            "score": 0.8,
            "box": box,
            "box_px": box_px,
        },
    }


def test_connect_announces_every_entity_and_zero_states(
    broker: Broker,
    sink_factory: Callable[..., MqttSink],
    collector_factory: Callable[..., Collector],
) -> None:
    col = collector_factory(broker, "homeassistant/#", "edgecam/cam1/#", persistent=False)
    sink_factory(controls=Controls(snapshots=True))
    wanted = {e.discovery_topic: dict(e.config) for e in ENTITIES}
    assert col.wait_for(lambda: configs(col) == wanted, 5), set(wanted) ^ set(configs(col))
    t = CAM.topics
    zero = {
        t.count("person"): b"0",
        t.count("car"): b"0",
        t.occupancy("person"): b"OFF",
        t.occupancy("car"): b"OFF",
        t.zone_count("driveway", "person"): b"0",
        t.zone_occupancy("driveway", "car"): b"OFF",
        t.state("detect"): b"ON",
        t.state("snapshots"): b"ON",
    }
    assert col.wait_for(lambda: all(last(col, k) == v for k, v in zero.items()), 5)
    # Retained, so HA gets them whenever it subscribes.
    late = collector_factory(
        broker, "edgecam/cam1/#", "homeassistant/#", client_id="late", persistent=False
    )
    assert late.wait_for(lambda: all(last(late, k) == v for k, v in zero.items()), 5)
    assert late.wait_for(lambda: configs(late) == wanted, 5)
    # Each topic's first copy is the broker's retained one; anything the sink publishes live
    # after `late` subscribed (its periodic stats) arrives without the flag, as MQTT says.
    first: dict[str, bool] = {}
    for m in late.messages:
        first.setdefault(m.topic, m.retain)
    assert all(first[topic] for topic in [*zero, *wanted])


def test_tracked_events_drive_occupancy_counts_and_ha_events(
    broker: Broker,
    sink_factory: Callable[..., MqttSink],
    collector_factory: Callable[..., Collector],
) -> None:
    col = collector_factory(broker, "edgecam/cam1/#", persistent=False)
    sink = sink_factory()
    t = CAM.topics
    assert col.wait_for(lambda: last(col, t.occupancy("person")) == b"OFF", 5)
    sink.publish_event(event("new", "a", "person", []))
    sink.publish_event(event("new", "b", "person", ["driveway"]))
    sink.publish_count("person", 2)  # the tracker's count: Home Assistant's link owns the topic
    sink.publish_event(event("update", "a", "person", ["driveway"]))
    sink.publish_event(event("update", "b", "person", []))
    sink.publish_event(event("end", "a", "person", ["driveway"]))
    assert col.wait_for(lambda: len(col.on("/zone/driveway/event")) == 4, 5)
    assert values(col, t.count("person")) == [b"0", b"1", b"2", b"1"]
    assert values(col, t.occupancy("person")) == [b"OFF", b"ON", b"ON", b"ON"]
    assert values(col, t.zone_count("driveway", "person")) == [b"0", b"1", b"2", b"1", b"0"]
    assert last(col, t.zone_occupancy("driveway", "person")) == b"OFF"
    camera_events = [json.loads(m.payload) for m in col.on("cam1/event")]
    assert [(e["event_type"], e["track_id"]) for e in camera_events] == [
        ("new", "a"),
        ("new", "b"),
        ("end", "a"),
    ]
    zone_events = [json.loads(m.payload) for m in col.on("/zone/driveway/event")]
    assert [(e["event_type"], e["track_id"], e["zone"]) for e in zone_events] == [
        ("new", "b", "driveway"),
        ("new", "a", "driveway"),
        ("end", "b", "driveway"),
        ("end", "a", "driveway"),
    ]
    assert zone_events[0]["snapshot"] == "image.edgecam_cam1_person_snapshot"
    assert not any(m.retain for m in col.on("/event"))  # HA ignores replayed events
    assert sink.hass is not None and sink.hass.events_dropped == 0
    # The tracker's events still go out in full on `events`, through the outbox.
    assert col.wait_for(lambda: len(col.on("/events")) == 5, 5)


def test_home_assistant_restart_gets_every_config_again(
    broker: Broker,
    sink_factory: Callable[..., MqttSink],
    collector_factory: Callable[..., Collector],
) -> None:
    col = collector_factory(broker, "homeassistant/+/edgecam_cam1/#", persistent=False)
    sink_factory()
    assert col.wait_for(lambda: len(col.on("/config")) == len(ENTITIES), 5)
    publish(broker, "homeassistant/status", "offline")  # HA's Last Will: nothing to do
    publish(broker, "homeassistant/status", "online")
    assert col.wait_for(lambda: len(col.on("/config")) == 2 * len(ENTITIES), 5)
    first, second = col.on("/config")[: len(ENTITIES)], col.on("/config")[len(ENTITIES) :]
    assert [(m.topic, m.payload) for m in first] == [(m.topic, m.payload) for m in second]


def test_retired_entities_are_removed_and_a_user_deletion_is_respected(
    broker: Broker,
    sink_factory: Callable[..., MqttSink],
    collector_factory: Callable[..., Collector],
) -> None:
    # Left on the broker by an earlier run: a label seen once, a zone since deleted, and a
    # config of another camera (never ours to touch).
    stale = [
        "homeassistant/sensor/edgecam_cam1/tv_count/config",
        "homeassistant/binary_sensor/edgecam_cam1/zone_porch_person_occupancy/config",
    ]
    other = "homeassistant/sensor/edgecam_cam2/tv_count/config"
    for topic in [*stale, other]:
        publish(broker, topic, json.dumps({"name": "tv count"}), retain=True)
    sink = sink_factory()
    assert sink.hass is not None
    assert wait_until(lambda: sink.hass is not None and sink.hass.removed == 2, 5)
    # A new subscriber (HA starting now) gets the wanted configs and the other camera's, and
    # nothing for the stale ones (at most the clearing message itself, if it is still live).
    col = collector_factory(broker, "homeassistant/#", persistent=False)
    wanted = {e.discovery_topic for e in ENTITIES} | {other}

    def settled() -> bool:
        seen = configs(col)
        return wanted <= {t for t, c in seen.items() if c} and all(not seen.get(t) for t in stale)

    assert col.wait_for(settled, 5), configs(col)
    time.sleep(0.2)
    assert settled()

    # The user deletes the person count sensor in HA: HA clears its config.
    person_count = next(e.discovery_topic for e in ENTITIES if e.key == "person_count")
    publish(broker, person_count, b"", retain=True)
    watcher = collector_factory(broker, person_count, client_id="watch", persistent=False)
    assert not watcher.wait_for(lambda: bool(last(watcher, person_count)), 1.0)
    publish(broker, "homeassistant/status", "online")  # HA restarts: the config file wins
    assert watcher.wait_for(lambda: bool(last(watcher, person_count)), 5)


def test_a_feature_turned_off_takes_its_entities_away(
    broker: Broker,
    sink_factory: Callable[..., MqttSink],
    collector_factory: Callable[..., Collector],
) -> None:
    first = sink_factory()
    col = collector_factory(broker, "homeassistant/#", persistent=False)
    assert col.wait_for(lambda: len(configs(col)) == len(ENTITIES), 5)
    first.close(2.0)
    lean = hass.Camera(device_id="cam1", model="ssd_mobilenet_v1", version="9.9.9")
    sink_factory(lean)
    kept = {e.discovery_topic for e in hass.entities(lean)}
    gone = {e.discovery_topic for e in ENTITIES} - kept
    assert col.wait_for(lambda: all(configs(col).get(t) == {} for t in gone), 5)
    assert all(configs(col)[t] for t in kept)


def test_states_changed_during_an_outage_are_right_after_it(
    broker: Broker, sink_factory: SinkFactory, collector_factory: Callable[..., Collector]
) -> None:
    """Latest values, not a replay: HA sees the state as it is when the broker is back."""
    sink = sink_factory()
    t = CAM.topics
    col = collector_factory(broker, "edgecam/cam1/#", persistent=False)
    sink.publish_event(event("new", "a", "person", ["driveway"]))
    assert col.wait_for(lambda: last(col, t.occupancy("person")) == b"ON", 5)
    broker.stop()
    assert wait_until(lambda: sink.state == "disconnected", 5)
    sink.publish_event(event("end", "a", "person", ["driveway"]))  # while the broker is down
    assert sink.hass is not None and sink.hass.events_dropped == 2  # camera + zone event
    broker.start()
    assert wait_until(lambda: sink.state == "connected", 10)
    after = collector_factory(broker, "edgecam/cam1/#", client_id="after", persistent=False)
    wanted = {
        t.occupancy("person"): b"OFF",
        t.count("person"): b"0",
        t.zone_occupancy("driveway", "person"): b"OFF",
        t.zone_count("driveway", "person"): b"0",
    }
    assert after.wait_for(lambda: all(last(after, k) == v for k, v in wanted.items()), 10)
    assert not after.on("/event")  # no stale event replayed


def _config(**sections: Any) -> EdgecamConfig:
    return EdgecamConfig.model_validate(
        {"mqtt": {"url": "mqtt://127.0.0.1"}, "homeassistant": {"enabled": True}, **sections}
    )


COCO = ("person", "bicycle", "car", "tv")


def test_plan_picks_labels_zones_and_features_from_the_config() -> None:
    def plan(config: EdgecamConfig, detector: bool = True) -> hass.Camera:
        setup = plan_hass(
            config,
            device_id="garage",
            model="ssd_mobilenet_v1",
            model_labels=COCO,
            detector=detector,
            controls=Controls(),
        )
        assert setup is not None
        return setup.camera

    assert plan(_config()).labels == ("person",)  # the default
    allow = _config(objects={"allow": ["car", "person"]})
    assert plan(allow).labels == ("car", "person")
    explicit = _config(
        homeassistant={"enabled": True, "labels": ["tv"], "device_name": "Garage"},
        zones=[{"name": "drive", "points": [[0, 0], [1, 0], [1, 1]], "labels": ["car"]}],
        snapshots={"enabled": True},
    )
    cam = plan(explicit)
    assert (cam.labels, cam.name, cam.snapshots) == (("tv",), "Garage", True)
    assert cam.zones == (hass.ZoneSpec("drive", ("car",)),)
    classifier = plan(explicit, detector=False)
    assert (classifier.labels, classifier.zones, classifier.snapshots) == ((), (), False)
    with pytest.raises(ConfigError, match=r"homeassistant.labels: unknown label\(s\) unicorn"):
        plan(_config(homeassistant={"enabled": True, "labels": ["unicorn"]}))
    off = _config(homeassistant={"enabled": False})
    assert (
        plan_hass(off, device_id="g", model="m", model_labels=COCO, detector=True, controls=None)
        is None
    )
