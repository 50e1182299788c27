"""`[homeassistant]`: MQTT discovery for Home Assistant (see docs/homeassistant.md)."""

from __future__ import annotations

from pydantic import Field, field_validator

from edgecam.config.base import Section, split_list
from edgecam.config.mqtt import check_topic_prefix


class HomeAssistantSection(Section):
    """`[homeassistant]`: one HA device per camera through MQTT discovery (off by default).

    Turning it on also turns on object tracking (as `events.enabled` does) for a detection
    model: occupancy and counts come from confirmed tracks, never from single frames.
    """

    enabled: bool = False
    discovery_prefix: str = "homeassistant"
    labels: tuple[str, ...] = Field(
        (),
        description="labels that get entities (default: objects.allow, else person)",
    )
    device_name: str | None = Field(
        None, min_length=1, max_length=64, description="device name in HA (default: device id)"
    )
    controls: bool = Field(
        True,
        description="detection/snapshot switches and a snapshot button; edgecam subscribes "
        "to <prefix>/<device>/set/+ (restrict who may publish there with broker ACLs)",
    )
    diagnostics: bool = Field(
        True, description="fps, inference ms, outbox, drops, reconnects, CPU temp, uptime"
    )

    @field_validator("discovery_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        return check_topic_prefix(value)

    _split_lists = field_validator("labels", mode="before")(split_list)

    @field_validator("labels")
    @classmethod
    def _no_duplicates(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(value))
