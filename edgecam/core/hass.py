"""Home Assistant MQTT discovery (pure): the entities of one camera, their configs, the topics
they read and the payloads of the Home Assistant-shaped topics.

One HA device per camera (node id ``edgecam_<device>``), built from MQTT discovery alone, with
no custom component: per tracked label an occupancy binary_sensor, a count sensor and (with
snapshots) the latest snapshot as an image; occupancy and count per zone; event entities
(``new`` / ``end``) for the camera and per zone; switches for detection and snapshots and a
button that takes a snapshot now; diagnostic sensors read from the retained ``stats`` message.
Every entity uses the camera's retained ``status`` topic (``online``, Last Will ``offline``) as
availability. See docs/homeassistant.md for the full list.

Compatibility rules, checked against Home Assistant's own discovery code by
tests/sinks/mqtt/test_hass_validate.py:

- Entity ids: HA < 2025.10 reads ``object_id``; 2025.10–2026.3 prefers ``default_entity_id``
  and warns about ``object_id`` alone; 2026.4+ knows only ``default_entity_id``. Both are sent
  and agree (``object_id: x``, ``default_entity_id: <platform>.x``). Never the abbreviation
  ``def_ent_id``: HA before 2025.10 does not expand it.
- Sensors and binary sensors may only carry ``entity_category: diagnostic``.
- ``device``, ``origin`` and availability hold documented keys only: one unknown key there
  makes HA reject the whole config.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from edgecam.core.controls import OFF, ON, PRESS
from edgecam.core.payload import label_topic_level
from edgecam.errors import ConfigError

Platform = Literal["sensor", "binary_sensor", "image", "event", "switch", "button"]
EVENT_TYPES = ("new", "end")
_NODE_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def node_id(device_id: str) -> str:
    """HA's node_id allows [a-zA-Z0-9_-] only; device ids may also contain '.'.

    An id with a '.' gets a short hash of the real id appended, so `a.b` and `a_b` (two
    cameras) never share a node id, unique ids or entities; ids without '.' keep their
    plain form, so existing entities keep their ids.
    """
    safe = _NODE_UNSAFE.sub("_", device_id)
    if safe != device_id:
        safe += "_" + hashlib.sha256(device_id.encode()).hexdigest()[:8]
    return "edgecam_" + safe


@dataclass(frozen=True, slots=True)
class Topics:
    """Every topic of one camera that a Home Assistant entity reads or writes."""

    root: str

    @classmethod
    def of(cls, topic_prefix: str, device_id: str) -> Topics:
        return cls(f"{topic_prefix}/{device_id}")

    @property
    def status(self) -> str:
        return f"{self.root}/status"

    @property
    def stats(self) -> str:
        return f"{self.root}/stats"

    @property
    def event(self) -> str:
        """Camera-level HA events (``new`` / ``end`` per object)."""
        return f"{self.root}/event"

    @property
    def still(self) -> str:
        """JPEG of a whole frame, taken on request (the button)."""
        return f"{self.root}/snapshot"

    def count(self, label: str) -> str:
        return f"{self.root}/count/{label_topic_level(label)}"

    def occupancy(self, label: str) -> str:
        return f"{self.root}/occupancy/{label_topic_level(label)}"

    def snapshot(self, label: str) -> str:
        return f"{self.root}/snapshot/{label_topic_level(label)}"

    def zone_count(self, zone: str, label: str) -> str:
        return f"{self.root}/zone/{zone}/count/{label_topic_level(label)}"

    def zone_occupancy(self, zone: str, label: str) -> str:
        return f"{self.root}/zone/{zone}/occupancy/{label_topic_level(label)}"

    def zone_event(self, zone: str) -> str:
        return f"{self.root}/zone/{zone}/event"

    def command(self, name: str) -> str:
        return f"{self.root}/set/{name}"

    def state(self, name: str) -> str:
        return f"{self.root}/state/{name}"


@dataclass(frozen=True, slots=True)
class ZoneSpec:
    """A zone and the labels that get entities in it."""

    name: str
    labels: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Camera:
    """Everything the entity set depends on: the same Camera always gives the same configs.

    labels: tracked labels that get entities; snapshots: per-label image entities and the
    Snapshots switch; controls: the command entities; cpu_temperature: the host has a sensor.
    """

    device_id: str
    model: str
    version: str
    topic_prefix: str = "edgecam"
    discovery_prefix: str = "homeassistant"
    name: str | None = None
    labels: tuple[str, ...] = ()
    zones: tuple[ZoneSpec, ...] = ()
    snapshots: bool = False
    controls: bool = True
    diagnostics: bool = True
    cpu_temperature: bool = False
    support_url: str | None = None

    @property
    def node(self) -> str:
        return node_id(self.device_id)

    @property
    def topics(self) -> Topics:
        return Topics.of(self.topic_prefix, self.device_id)

    def snapshot_entity(self, label: str) -> str | None:
        """The entity id HA suggests for the label's snapshot image (None: there is none)."""
        if not self.snapshots or label not in self.labels:
            return None
        return f"image.{self.node}_{label_topic_level(label)}_snapshot"


@dataclass(frozen=True, slots=True)
class Entity:
    """One discovery config. key: unique within the camera; the entity is ``<node>_<key>``."""

    platform: Platform
    key: str
    config: Mapping[str, Any]
    discovery_topic: str

    @property
    def unique_id(self) -> str:
        return str(self.config["unique_id"])


def device_block(cam: Camera) -> dict[str, Any]:
    """Groups every entity of one camera under one HA device."""
    return {
        "identifiers": [cam.node],
        "name": cam.name or cam.device_id,
        "manufacturer": "edgecam",
        "model": cam.model,
        "sw_version": cam.version,
    }


def origin_block(cam: Camera) -> dict[str, Any]:
    origin = {"name": "edgecam", "sw_version": cam.version}
    if cam.support_url:
        origin["support_url"] = cam.support_url
    return origin


def _title(text: str) -> str:
    return text[:1].upper() + text[1:]


class _Builder:
    def __init__(self, cam: Camera) -> None:
        self.cam = cam
        self.t = cam.topics
        self.out: list[Entity] = []

    def add(self, platform: Platform, key: str, name: str, **fields: Any) -> None:
        object_id = f"{self.cam.node}_{key}"
        config = {
            "name": name,
            "unique_id": object_id,
            "object_id": object_id,
            "default_entity_id": f"{platform}.{object_id}",
            "availability_topic": self.t.status,
            "payload_available": "online",
            "payload_not_available": "offline",
            **fields,
            "device": device_block(self.cam),
            "origin": origin_block(self.cam),
        }
        topic = f"{self.cam.discovery_prefix}/{platform}/{self.cam.node}/{key}/config"
        self.out.append(Entity(platform, key, config, topic))

    def occupancy(self, key: str, name: str, topic: str) -> None:
        self.add(
            "binary_sensor",
            key,
            name,
            state_topic=topic,
            payload_on=ON,
            payload_off=OFF,
            device_class="occupancy",
        )

    def count(self, key: str, name: str, topic: str) -> None:
        self.add(
            "sensor",
            key,
            name,
            state_topic=topic,
            state_class="measurement",
            unit_of_measurement="objects",
            icon="mdi:counter",
        )

    def event(self, key: str, name: str, topic: str) -> None:
        self.add("event", key, name, state_topic=topic, event_types=list(EVENT_TYPES))


def entities(cam: Camera) -> list[Entity]:
    """Every entity the camera announces, in a stable order; ConfigError on a key clash."""
    b, t = _Builder(cam), cam.topics
    for label in cam.labels:
        level, title = label_topic_level(label), _title(label)
        b.occupancy(f"{level}_occupancy", f"{title} occupancy", t.occupancy(label))
        b.count(f"{level}_count", f"{title} count", t.count(label))
        if cam.snapshots:
            b.add("image", f"{level}_snapshot", f"{title} snapshot", image_topic=t.snapshot(label))
    for zone in cam.zones:
        for label in zone.labels:
            key = f"zone_{zone.name}_{label_topic_level(label)}"
            name = f"{_title(zone.name)} {label}"
            b.occupancy(f"{key}_occupancy", f"{name} occupancy", t.zone_occupancy(zone.name, label))
            b.count(f"{key}_count", f"{name} count", t.zone_count(zone.name, label))
        b.event(f"zone_{zone.name}_events", f"{_title(zone.name)} objects", t.zone_event(zone.name))
    b.event("events", "Objects", t.event)
    if cam.controls:
        _controls(b)
    if cam.diagnostics:
        _diagnostics(b)
    _check_unique(b.out)
    return b.out


def _controls(b: _Builder) -> None:
    t = b.t
    switch = {"payload_on": ON, "payload_off": OFF, "entity_category": "config"}
    b.add(
        "switch",
        "detect",
        "Detection",
        command_topic=t.command("detect"),
        state_topic=t.state("detect"),
        icon="mdi:motion-sensor",
        **switch,
    )
    if b.cam.snapshots:
        b.add(
            "switch",
            "snapshots",
            "Snapshots",
            command_topic=t.command("snapshots"),
            state_topic=t.state("snapshots"),
            icon="mdi:image-multiple",
            **switch,
        )
    b.add(
        "button",
        "take_snapshot",
        "Take snapshot",
        command_topic=t.command("snapshot"),
        payload_press=PRESS,
        icon="mdi:camera",
    )
    b.add("image", "snapshot", "Snapshot", image_topic=t.still)


#: (key, name, value template over the stats message, extra sensor fields). Templates use
#: .get() so a missing field renders "None", which HA shows as unknown instead of logging.
_DIAGNOSTICS: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    (
        "fps",
        "Frame rate",
        "{{ value_json.pipeline.get('fps_out') }}",
        {"unit_of_measurement": "fps", "state_class": "measurement", "icon": "mdi:speedometer"},
    ),
    (
        "inference_ms",
        "Inference time",
        "{{ value_json.pipeline.get('stages_ms', {}).get('invoke', {}).get('p50') }}",
        {"unit_of_measurement": "ms", "device_class": "duration", "state_class": "measurement"},
    ),
    (
        "outbox_depth",
        "Outbox depth",
        "{{ value_json.mqtt.get('outbox_depth') }}",
        {"unit_of_measurement": "messages", "state_class": "measurement", "icon": "mdi:tray-full"},
    ),
    (
        "messages_dropped",
        "Messages dropped",
        "{{ value_json.mqtt.get('messages_dropped_total') }}",
        {"unit_of_measurement": "messages", "state_class": "total_increasing", "icon": "mdi:alert"},
    ),
    (
        "reconnects",
        "Broker reconnects",
        "{{ value_json.mqtt.get('reconnects') }}",
        {"state_class": "total_increasing", "icon": "mdi:lan-disconnect"},
    ),
    (
        "cpu_temperature",
        "CPU temperature",
        "{{ value_json.pipeline.get('cpu_temp_c') }}",
        {"unit_of_measurement": "°C", "device_class": "temperature", "state_class": "measurement"},
    ),
    (
        "uptime",
        "Uptime",
        "{{ value_json.get('uptime_s', 0) | int }}",
        {"unit_of_measurement": "s", "device_class": "duration", "state_class": "measurement"},
    ),
    ("runtime", "Runtime", "{{ value_json.pipeline.get('runtime') }}", {"icon": "mdi:chip"}),
)


def _diagnostics(b: _Builder) -> None:
    for key, name, template, extra in _DIAGNOSTICS:
        if key == "cpu_temperature" and not b.cam.cpu_temperature:
            continue
        b.add(
            "sensor",
            key,
            name,
            state_topic=b.t.stats,
            value_template=template,
            entity_category="diagnostic",
            **extra,
        )


def _check_unique(out: Sequence[Entity]) -> None:
    seen: dict[str, str] = {}
    for entity in out:
        if entity.unique_id in seen:
            raise ConfigError(
                f"homeassistant: two entities would share the id {entity.unique_id} "
                f"({seen[entity.unique_id]} and {entity.platform})",
                "rename the zone or leave one of the labels out of homeassistant.labels",
            )
        seen[entity.unique_id] = entity.platform


def event_message(
    cam: Camera, kind: str, event: Mapping[str, Any], zone: str | None = None
) -> dict[str, Any]:
    """The payload HA's event entity reads: ``event_type`` + attributes for automations.

    ``event`` is the tracker's event dict (edgecam.core.events.events_to_dict); ``zone`` is set
    for a zone's own event entity, otherwise the first zone the object is in (or None).
    """
    label = str(event.get("label", ""))
    zones = [str(z) for z in event.get("zones") or ()]
    snapshot = cam.snapshot_entity(label)
    return {
        "event_type": kind,
        "label": label,
        "zone": zone if zone is not None else (zones[0] if zones else None),
        "zones": zones,
        "score": event.get("best_score", event.get("score")),
        "track_id": event.get("track_id"),
        "camera": cam.device_id,
        "snapshot": snapshot,
        "snapshot_topic": cam.topics.snapshot(label) if snapshot else None,
    }
