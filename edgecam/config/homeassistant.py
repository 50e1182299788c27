"""`[homeassistant]`: MQTT discovery for Home Assistant."""

from __future__ import annotations

from pydantic import Field, field_validator

from edgecam.config.base import Section, split_list
from edgecam.config.mqtt import check_topic_prefix


class HomeAssistantSection(Section):
    """`[homeassistant]`: MQTT discovery of per-label count sensors (off by default)."""

    enabled: bool = False
    discovery_prefix: str = "homeassistant"
    labels: tuple[str, ...] = Field((), description="announced at start; others when first seen")

    @field_validator("discovery_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        return check_topic_prefix(value)

    _split_lists = field_validator("labels", mode="before")(split_list)
