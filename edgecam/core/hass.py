"""Home Assistant MQTT discovery payloads (pure): one object-count sensor per label.

The sensor reads the retained `<prefix>/<device>/count/<label>` topic and uses the device's
retained `status` topic (online / Last Will offline) as availability, so HA greys the entity
out when the camera dies. See https://www.home-assistant.io/integrations/sensor.mqtt/.
"""

from __future__ import annotations

from typing import Any

from edgecam.core.payload import label_topic_level


def node_id(device_id: str) -> str:
    """HA's node_id allows [a-zA-Z0-9_-] only; device ids may also contain '.'."""
    return "edgecam_" + device_id.replace(".", "_")


def device_block(*, device_id: str, model: str, version: str) -> dict[str, Any]:
    """Groups every entity of one camera under one HA device."""
    return {
        "identifiers": [node_id(device_id)],
        "name": f"edgecam {device_id}",
        "manufacturer": "edgecam",
        "model": model,
        "sw_version": version,
    }


def count_sensor(
    *,
    discovery_prefix: str,
    topic_prefix: str,
    device_id: str,
    label: str,
    model: str,
    version: str,
) -> tuple[str, dict[str, Any]]:
    """(config topic, config payload) for the `<label>` count sensor of one device."""
    level = label_topic_level(label)
    node = node_id(device_id)
    root = f"{topic_prefix}/{device_id}"
    config = {
        "name": f"{label} count",
        "unique_id": f"{node}_{level}_count",
        "object_id": f"{node}_{level}_count",
        "state_topic": f"{root}/count/{level}",
        "availability_topic": f"{root}/status",
        "payload_available": "online",
        "payload_not_available": "offline",
        "state_class": "measurement",
        "unit_of_measurement": "objects",
        "icon": "mdi:counter",
        "device": device_block(device_id=device_id, model=model, version=version),
        "origin": {"name": "edgecam", "sw_version": version},
    }
    return f"{discovery_prefix}/sensor/{node}/{level}_count/config", config
