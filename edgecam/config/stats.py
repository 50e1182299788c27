"""`[stats]`: how often the retained stats message is published."""

from __future__ import annotations

from pydantic import Field

from edgecam.config.base import Section


class StatsSection(Section):
    """`[stats]`: how often the retained stats message is published."""

    interval_s: float = Field(10.0, ge=0.1, le=86_400)
