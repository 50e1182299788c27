"""Home Assistant discovery for the MQTT sink: which labels HA knows, and (re)announcing them.

Configs are published directly (retained, QoS 1), not through the outbox: they are re-sent on
every connect and whenever HA announces a restart, so a queued stale copy would add nothing.
"""

from __future__ import annotations

import json
import threading

import paho.mqtt.client as mqtt

from edgecam import __version__
from edgecam.config.homeassistant import HomeAssistantSection
from edgecam.core import hass


class Discovery:
    """Thread-safe: labels are added on the pipeline thread, announced from paho's thread."""

    def __init__(
        self, cfg: HomeAssistantSection, *, topic_prefix: str, device_id: str, model: str
    ) -> None:
        self.cfg = cfg
        self.topic_prefix = topic_prefix
        self.device_id = device_id
        self.model = model
        self._labels = set(cfg.labels)
        self._lock = threading.Lock()

    @classmethod
    def create(
        cls, cfg: HomeAssistantSection | None, topic_prefix: str, device_id: str, model: str
    ) -> Discovery | None:
        """None unless discovery is enabled."""
        if cfg is None or not cfg.enabled:
            return None
        return cls(cfg, topic_prefix=topic_prefix, device_id=device_id, model=model)

    @property
    def status_topic(self) -> str:
        """Where HA publishes `online` after it (re)starts."""
        return f"{self.cfg.discovery_prefix}/status"

    def add(self, label: str) -> bool:
        """Remember a label; True the first time it is seen (it needs announcing)."""
        with self._lock:
            if label in self._labels:
                return False
            self._labels.add(label)
            return True

    def announce(self, client: mqtt.Client, labels: list[str] | None = None) -> None:
        """Publish the sensor configs of `labels` (default: every known label)."""
        if labels is None:
            with self._lock:
                labels = sorted(self._labels)
        for label in labels:
            topic, config = hass.count_sensor(
                discovery_prefix=self.cfg.discovery_prefix,
                topic_prefix=self.topic_prefix,
                device_id=self.device_id,
                label=label,
                model=self.model,
                version=__version__,
            )
            client.publish(topic, json.dumps(config, separators=(",", ":")), qos=1, retain=True)
