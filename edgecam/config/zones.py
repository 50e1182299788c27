"""`[[zones]]`: named polygons in normalized image coordinates."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from pydantic import AfterValidator, Field, field_validator

from edgecam.config.base import Section, split_list
from edgecam.core.zones import Zone, polygon_problem

if TYPE_CHECKING:
    pass


class ZoneSection(Section):
    """`[[zones]]`: a named polygon in normalized frame coordinates."""

    name: str = Field(
        pattern=r"^[A-Za-z0-9_-]{1,64}$", description="letters, digits, _ and - (MQTT-safe)"
    )
    points: tuple[tuple[float, float], ...] = Field(
        min_length=3, description="[x, y] corners in order, each in 0..1 of the frame"
    )
    inertia: int = Field(
        3, ge=1, le=100, description="agreeing observations needed to enter or to leave"
    )
    labels: tuple[str, ...] = Field((), description="only these labels count (empty: all)")

    _split_labels = field_validator("labels", mode="before")(split_list)

    @field_validator("points")
    @classmethod
    def _valid_polygon(
        cls, value: tuple[tuple[float, float], ...]
    ) -> tuple[tuple[float, float], ...]:
        problem = polygon_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    def to_zone(self) -> Zone:
        return Zone(self.name, self.points, self.inertia, frozenset(self.labels))


def _unique_names(zones: tuple[ZoneSection, ...]) -> tuple[ZoneSection, ...]:
    names = [z.name for z in zones]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"zone names must be unique, repeated: {', '.join(dupes)}")
    return zones


#: Type of the top-level ``zones`` field (``[[zones]]`` array of tables).
ZoneList = Annotated[tuple[ZoneSection, ...], AfterValidator(_unique_names)]
