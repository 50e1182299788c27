"""Home Assistant discovery configs (pure): which entities a camera gets and what they say.

These tests pin the shape; whether Home Assistant itself accepts the configs is checked by
running its own discovery code in tests/sinks/mqtt/test_hass_validate.py.
"""

from __future__ import annotations

import json
import re

import pytest

from edgecam.core import hass
from edgecam.errors import ConfigError

CAM = hass.Camera(
    device_id="garage.pi",
    model="ssd_mobilenet_v1",
    version="1.2.3",
    labels=("person", "dining table"),
    zones=(hass.ZoneSpec("driveway", ("car",)),),
    snapshots=True,
    cpu_temperature=True,
    support_url="https://example.org/edgecam",
)


def by_key(cam: hass.Camera = CAM) -> dict[str, hass.Entity]:
    return {e.key: e for e in hass.entities(cam)}


def test_the_entity_set() -> None:
    keys = {k: e.platform for k, e in by_key().items()}
    assert keys == {
        "person_occupancy": "binary_sensor",
        "person_count": "sensor",
        "person_snapshot": "image",
        "dining_table_occupancy": "binary_sensor",
        "dining_table_count": "sensor",
        "dining_table_snapshot": "image",
        "zone_driveway_car_occupancy": "binary_sensor",
        "zone_driveway_car_count": "sensor",
        "zone_driveway_events": "event",
        "events": "event",
        "detect": "switch",
        "snapshots": "switch",
        "take_snapshot": "button",
        "snapshot": "image",
        "fps": "sensor",
        "inference_ms": "sensor",
        "outbox_depth": "sensor",
        "messages_dropped": "sensor",
        "reconnects": "sensor",
        "cpu_temperature": "sensor",
        "uptime": "sensor",
        "runtime": "sensor",
    }


def test_features_off_leave_their_entities_out() -> None:
    lean = hass.Camera(device_id="c", model="m", version="v", labels=("person",), controls=False)
    assert set(by_key(lean)) == {
        "person_occupancy",
        "person_count",
        "events",
        *("fps", "inference_ms", "outbox_depth", "messages_dropped", "reconnects"),
        *("uptime", "runtime"),
    }
    bare = hass.Camera(device_id="c", model="m", version="v", controls=False, diagnostics=False)
    assert set(by_key(bare)) == {"events"}


def test_common_keys_and_entity_ids() -> None:
    for entity in hass.entities(CAM):
        c = entity.config
        object_id = f"edgecam_garage_pi_f5825eb8_{entity.key}"
        assert c["unique_id"] == object_id
        # Both keys, consistent: HA < 2025.10 reads object_id, newer HA default_entity_id.
        assert c["object_id"] == object_id
        assert c["default_entity_id"] == f"{entity.platform}.{object_id}"
        assert "def_ent_id" not in c
        assert entity.discovery_topic == (
            f"homeassistant/{entity.platform}/edgecam_garage_pi_f5825eb8/{entity.key}/config"
        )
        assert c["availability_topic"] == "edgecam/garage.pi/status"
        assert (c["payload_available"], c["payload_not_available"]) == ("online", "offline")
        assert c["device"] == {
            "identifiers": ["edgecam_garage_pi_f5825eb8"],
            "name": "garage.pi",
            "manufacturer": "edgecam",
            "model": "ssd_mobilenet_v1",
            "sw_version": "1.2.3",
        }
        assert c["origin"] == {
            "name": "edgecam",
            "sw_version": "1.2.3",
            "support_url": "https://example.org/edgecam",
        }
        if entity.platform in ("sensor", "binary_sensor"):
            assert c.get("entity_category") in (None, "diagnostic")
        json.dumps(c)


def test_state_topics() -> None:
    e = by_key()
    assert e["person_occupancy"].config["state_topic"] == "edgecam/garage.pi/occupancy/person"
    assert e["person_occupancy"].config["device_class"] == "occupancy"
    assert e["dining_table_count"].config["state_topic"] == "edgecam/garage.pi/count/dining_table"
    assert e["person_count"].config["unique_id"] == "edgecam_garage_pi_f5825eb8_person_count"
    assert e["person_snapshot"].config["image_topic"] == "edgecam/garage.pi/snapshot/person"
    assert (
        e["zone_driveway_car_occupancy"].config["state_topic"]
        == "edgecam/garage.pi/zone/driveway/occupancy/car"
    )
    assert e["zone_driveway_car_count"].config["name"] == "Driveway car count"
    assert (
        e["zone_driveway_events"].config["state_topic"] == "edgecam/garage.pi/zone/driveway/event"
    )
    assert e["events"].config["event_types"] == ["new", "end"]
    assert e["detect"].config["command_topic"] == "edgecam/garage.pi/set/detect"
    assert e["detect"].config["state_topic"] == "edgecam/garage.pi/state/detect"
    assert e["take_snapshot"].config["command_topic"] == "edgecam/garage.pi/set/snapshot"
    assert e["snapshot"].config["image_topic"] == "edgecam/garage.pi/snapshot"
    for key in ("fps", "uptime", "runtime", "cpu_temperature"):
        assert e[key].config["state_topic"] == "edgecam/garage.pi/stats"
        assert e[key].config["entity_category"] == "diagnostic"


def test_key_clash_is_a_config_error() -> None:
    cam = hass.Camera(
        device_id="c",
        model="m",
        version="v",
        labels=("zone_a_b",),
        zones=(hass.ZoneSpec("a", ("b",)),),
    )
    with pytest.raises(ConfigError, match="share the id edgecam_c_zone_a_b_occupancy"):
        hass.entities(cam)


def test_event_message() -> None:
    event = {
        "event": "new",
        "label": "person",
        "track_id": "r1:4",
        "score": 0.7,
        "best_score": 0.81,
        "zones": ["porch", "driveway"],
    }
    assert hass.event_message(CAM, "new", event) == {
        "event_type": "new",
        "label": "person",
        "zone": "porch",
        "zones": ["porch", "driveway"],
        "score": 0.81,
        "track_id": "r1:4",
        "camera": "garage.pi",
        "snapshot": "image.edgecam_garage_pi_f5825eb8_person_snapshot",
        "snapshot_topic": "edgecam/garage.pi/snapshot/person",
    }
    car = hass.event_message(CAM, "end", {**event, "label": "car"}, zone="driveway")
    assert car["zone"] == "driveway" and car["snapshot"] is None  # car has no image entity


def test_node_id_is_discovery_safe_and_never_shared() -> None:
    dotted = hass.node_id("garage.pi")
    assert re.fullmatch(r"edgecam_garage_pi_[0-9a-f]{8}", dotted)
    assert dotted != hass.node_id("garage_pi") == "edgecam_garage_pi"  # two cameras, two ids
    assert hass.node_id("cam-1_a") == "edgecam_cam-1_a"  # ids without '.' are unchanged
