"""The whole config file: one field per section, each section in its own module."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, Field, model_validator

from edgecam.config.base import Section
from edgecam.config.events import EventsSection
from edgecam.config.homeassistant import HomeAssistantSection
from edgecam.config.logging import LoggingSection
from edgecam.config.model import ModelSection
from edgecam.config.mqtt import MqttSection
from edgecam.config.objects import ObjectsSection
from edgecam.config.outbox import OutboxSection
from edgecam.config.output import OutputSection
from edgecam.config.pipeline import PipelineSection
from edgecam.config.service import ServiceSection
from edgecam.config.snapshots import SnapshotsSection
from edgecam.config.source import SourceSection
from edgecam.config.stats import StatsSection
from edgecam.config.tracking import TrackingSection
from edgecam.config.web import WebSection
from edgecam.config.zones import ZoneList

if sys.version_info >= (3, 11):
    pass
else:  # pragma: no cover
    pass


DEFAULT_CONFIG_PATH = Path("/etc/edgecam/edgecam.toml")


_S = TypeVar("_S", bound=BaseModel)


def _default(section: type[_S]) -> Callable[[], _S]:
    """Default factory typed for mypy (pydantic's generated __init__ hides the defaults)."""
    return lambda: section.model_validate({})


class EdgecamConfig(Section):
    """The whole file. Each table is one section class in its own module.

    Every section has a default for each field, so an empty file is a valid config.
    """

    model: ModelSection = Field(default_factory=_default(ModelSection))
    source: SourceSection = Field(default_factory=_default(SourceSection))
    output: OutputSection = Field(default_factory=_default(OutputSection))
    pipeline: PipelineSection = Field(default_factory=_default(PipelineSection))
    mqtt: MqttSection = Field(default_factory=_default(MqttSection))
    outbox: OutboxSection = Field(default_factory=_default(OutboxSection))
    stats: StatsSection = Field(default_factory=_default(StatsSection))
    homeassistant: HomeAssistantSection = Field(default_factory=_default(HomeAssistantSection))
    events: EventsSection = Field(default_factory=_default(EventsSection))
    tracking: TrackingSection = Field(default_factory=_default(TrackingSection))
    objects: ObjectsSection = Field(default_factory=_default(ObjectsSection))
    zones: ZoneList = Field(default=(), description="[[zones]] polygons")
    snapshots: SnapshotsSection = Field(default_factory=_default(SnapshotsSection))
    service: ServiceSection = Field(default_factory=_default(ServiceSection))
    logging: LoggingSection = Field(default_factory=_default(LoggingSection))
    web: WebSection = Field(default_factory=_default(WebSection))

    @model_validator(mode="after")
    def _stop_budget(self) -> EdgecamConfig:
        """The pipeline's join deadline is part of the whole graceful-stop budget."""
        if self.pipeline.stop_timeout_s >= self.service.stop_deadline_s:
            raise ValueError(
                f"pipeline.stop_timeout_s ({self.pipeline.stop_timeout_s:g}) must be below "
                f"service.stop_deadline_s ({self.service.stop_deadline_s:g}): the sinks need "
                "time to flush after the pipeline stops"
            )
        return self
