"""Home Assistant over MQTT: discovery, entity states from tracked objects, stale-entity
removal and the command topics, for one camera.

What HA sees is decided once at start (:func:`plan_hass`): the labels and zones from the
config, never labels that merely showed up in a frame, so a false positive never becomes a
permanent entity. On every connect, and whenever HA announces a restart (``online`` on
``<prefix>/status``), every config is published again (retained, QoS 1), with the current
state of every occupancy/count topic (0 / OFF for an announced label nobody is in).

Removal: edgecam subscribes to its own config topics (``<prefix>/+/<node>/+/config``); a
retained config that is no longer wanted (a label or zone taken out of the config, a feature
turned off, a label an older edgecam announced on first sight) is cleared with an empty
retained payload, which makes HA delete the entity. When the *user* deletes an entity in HA,
HA clears the config itself; edgecam leaves it deleted for the rest of the connection and
announces it again on its next connect or HA restart, because the config file, not HA, says
what the camera has. To drop an entity for good, take its label or zone out of the config.

Direct publishes, not the outbox: configs, states and HA events are latest values or
time-critical; a stale copy replayed after an outage would only mislead (an hour-old "car
entered the driveway" must not switch a light on). States are re-sent at every connect; HA
events produced while disconnected are dropped and counted.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from edgecam import __version__
from edgecam.config.root import EdgecamConfig
from edgecam.core import hass
from edgecam.core.controls import OFF, ON
from edgecam.core.occupancy import Occupancy, OccupancyStep
from edgecam.dirs import project_url
from edgecam.errors import ConfigError
from edgecam.pipeline.metrics import cpu_temperature_c
from edgecam.sinks.mqtt_commands import CommandTopics, Controls, Publish

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HassSetup:
    """What to announce (camera) and what the command topics switch (controls, None: none)."""

    camera: hass.Camera
    controls: Controls | None = None


def announced_labels(config: EdgecamConfig, model_labels: Sequence[str]) -> tuple[str, ...]:
    """homeassistant.labels, else objects.allow, else person (if the model has it)."""
    ha = config.homeassistant
    unknown = sorted(set(ha.labels) - set(model_labels))
    if unknown:
        raise ConfigError(
            f"homeassistant.labels: unknown label(s) {', '.join(unknown)}",
            "use label names from the model's labels file",
        )
    if ha.labels:
        return ha.labels
    if config.objects.allow:
        return config.objects.allow
    return ("person",) if "person" in model_labels else ()


def plan_hass(
    config: EdgecamConfig,
    *,
    device_id: str,
    model: str,
    model_labels: Sequence[str],
    detector: bool,
    controls: Controls | None,
) -> HassSetup | None:
    """The camera Home Assistant gets, or None when discovery is off (or MQTT is)."""
    ha = config.homeassistant
    if ha.enabled and not config.mqtt.enabled:
        log.warning("homeassistant.enabled needs an MQTT broker ([mqtt] url or --mqtt): off")
    if not ha.enabled or not config.mqtt.enabled:
        return None
    labels = announced_labels(config, model_labels) if detector else ()
    zones = tuple(hass.ZoneSpec(z.name, z.labels or labels) for z in config.zones)
    camera = hass.Camera(
        device_id=device_id,
        model=model,
        version=__version__,
        topic_prefix=config.mqtt.topic_prefix,
        discovery_prefix=ha.discovery_prefix,
        name=ha.device_name,
        labels=labels,
        zones=zones if detector else (),
        snapshots=detector and config.snapshots.enabled,
        controls=ha.controls and controls is not None,
        diagnostics=ha.diagnostics,
        cpu_temperature=cpu_temperature_c() is not None,
        support_url=project_url(),
    )
    return HassSetup(camera, controls if ha.controls else None)


def _dumps(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def _via(client: mqtt.Client) -> Publish:
    """Publish through `client` now (inside on_connect the sink does not count as connected)."""

    def publish(topic: str, payload: bytes, qos: int, retain: bool) -> bool:
        info = client.publish(topic, payload, qos=qos, retain=retain)
        return info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS

    return publish


def _on_off(count: int) -> bytes:
    return (ON if count > 0 else OFF).encode()


class HomeAssistantLink:
    """The sink's Home Assistant side. Thread-safe: events come from the pipeline's output
    thread, connects and messages from paho's network thread."""

    def __init__(self, setup: HassSetup, publish: Publish, *, qos: int = 1) -> None:
        self.camera = cam = setup.camera
        self.entities = hass.entities(cam)
        self._configs = [(e.discovery_topic, _dumps(e.config)) for e in self.entities]
        self._wanted = {topic for topic, _ in self._configs}
        self._publish = publish
        self.qos = qos
        self.topics = cam.topics
        self.birth_topic = f"{cam.discovery_prefix}/status"
        self.config_filter = f"{cam.discovery_prefix}/+/{cam.node}/+/config"
        self.commands = (
            CommandTopics(setup.controls, self.topics, qos=qos)
            if setup.controls is not None and cam.controls
            else None
        )
        self._occupancy = Occupancy()
        self._lock = threading.Lock()
        self.removed = 0
        self.events_dropped = 0

    # -- paho's thread ---------------------------------------------------------------------

    def on_connect(self, client: mqtt.Client) -> None:
        publish = _via(client)
        client.subscribe([(self.birth_topic, 1), (self.config_filter, 1)])
        self.announce(publish)
        self._publish_all_states(publish)
        if self.commands is not None:
            self.commands.on_connect(client, publish, self.camera.snapshots)

    def on_message(self, client: mqtt.Client, message: mqtt.MQTTMessage) -> None:
        topic, payload = message.topic, bytes(message.payload)
        if topic == self.birth_topic:
            if payload == b"online":  # HA (re)started: it needs the configs again
                self.announce(_via(client))
        elif self.commands is not None and self.commands.handles(topic):
            self.commands.on_message(message, _via(client), self.camera.snapshots)
        elif mqtt.topic_matches_sub(self.config_filter, topic):
            self._config_seen(client, topic, payload)

    def announce(self, publish: Publish) -> None:
        for topic, payload in self._configs:
            publish(topic, payload, 1, True)

    def _config_seen(self, client: mqtt.Client, topic: str, payload: bytes) -> None:
        if topic in self._wanted:
            if not payload:
                log.info(
                    "Home Assistant deleted the entity of %s: it comes back when edgecam "
                    "reconnects or Home Assistant restarts (take its label or zone out of "
                    "the edgecam config to drop it for good)",
                    topic,
                )
            return
        if payload:  # ours, but no longer in the config: make HA delete the entity
            client.publish(topic, b"", qos=1, retain=True)
            self.removed += 1
            log.info("removed the Home Assistant entity %s (no longer in the config)", topic)

    # -- the pipeline's output thread ------------------------------------------------------

    def on_event(self, event: Mapping[str, Any]) -> None:
        """One tracker event (edgecam.core.events.events_to_dict): states and HA events."""
        kind = str(event.get("event", ""))
        label = str(event.get("label", ""))
        zones = [str(z) for z in event.get("zones") or ()]
        with self._lock:
            step = self._occupancy.apply(kind, str(event.get("track_id", "")), label, zones)
            self._publish_step(step, self._publish)
            messages = []
            if kind in hass.EVENT_TYPES:
                messages.append((self.topics.event, hass.event_message(self.camera, kind, event)))
            for change in step.zone_events:
                payload = hass.event_message(self.camera, change.kind, event, zone=change.zone)
                messages.append((self.topics.zone_event(change.zone), payload))
            for topic, payload in messages:
                if not self._publish(topic, _dumps(payload), self.qos, False):
                    self.events_dropped += 1

    # -- states ----------------------------------------------------------------------------

    def _publish_step(self, step: OccupancyStep, publish: Publish) -> None:
        t, qos = self.topics, self.qos
        for label, n in step.counts.items():
            publish(t.count(label), str(n).encode(), qos, True)
            publish(t.occupancy(label), _on_off(n), qos, True)
        for (zone, label), n in step.zone_counts.items():
            publish(t.zone_count(zone, label), str(n).encode(), qos, True)
            publish(t.zone_occupancy(zone, label), _on_off(n), qos, True)

    def _publish_all_states(self, publish: Publish) -> None:
        """Every state topic HA reads, as it is now (0 / OFF where nobody is)."""
        with self._lock:
            occ = self._occupancy
            labels = dict.fromkeys([*self.camera.labels, *sorted(occ.labels())])
            pairs = dict.fromkeys(
                [(z.name, label) for z in self.camera.zones for label in z.labels]
                + sorted(occ.zone_labels())
            )
            self._publish_step(
                OccupancyStep(
                    counts={label: occ.count(label) for label in labels},
                    zone_counts={pair: occ.zone_count(*pair) for pair in pairs},
                ),
                publish,
            )
