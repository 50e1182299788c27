"""Config sections for tracking, per-label filters, zones, events and snapshots.

```toml
[events]                 # opt-in: tracked-object events + per-label counts
enabled = true

[tracking]
max_disappeared = 30     # source frames (incl. frames the pipeline skipped)

[objects]                # defaults for every label
deny = ["tv"]            # never track these (allow = [...] tracks only those)
min_score = 0.5
confirm_score = 0.6      # median of the last confirm_frames scores needed for an event

[objects.filters.person] # per-label overrides; unset keys inherit [objects]
min_area = 0.005
max_ratio = 1.5

[[zones]]
name = "driveway"
points = [[0.1, 0.55], [0.9, 0.55], [0.95, 1.0], [0.05, 1.0]]   # normalized x, y

[snapshots]
enabled = true
crop = true
dir = "/var/lib/edgecam/snapshots"
```

Defaults explained: ``min_score`` 0.5 is the usual detector threshold; ``confirm_score`` 0.6
sits a step above it (Frigate uses 0.7 over min 0.5 for its larger models; int8 SSD-MobileNet
scores real people mostly in 0.55-0.85). ``confirm_frames`` 5 needs 3 good observations,
~0.3-0.6 s at 5-10 fps. ``max_disappeared`` 30 frames is 1-3 s at 10-30 fps. ``match_buffer``
0.5 links a walker seen at ~5 fps (moving about half its width per frame). ``duplicate_overlap``
0.8 only merges boxes that are nearly nested (side-by-side people overlap far less).
Nested tables (``[objects.filters.<label>]``, ``[[zones]]``) are file-only: command-line
overrides address ``section.key``.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator, Field, field_validator, model_validator

from edgecam.config.base import Section
from edgecam.errors import ConfigError
from edgecam.events import EventEngine
from edgecam.filters import LabelRule, ObjectFilter
from edgecam.tracking import Tracker
from edgecam.zones import Zone, polygon_problem

if TYPE_CHECKING:
    from edgecam.snapshot import SnapshotOptions


def _split(value: object) -> object:
    """Accept "a, b" (from a command-line override) as well as a TOML list."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


class EventsSection(Section):
    """`[events]`: tracked-object lifecycle messages (new / update / end) and counts."""

    enabled: bool = Field(False, description="track objects and publish events and counts")
    score_margin: float = Field(
        0.05, ge=0, le=1, description="rise of the best score that is worth an `update` event"
    )


class TrackingSection(Section):
    """`[tracking]`: how detections are linked into objects across frames."""

    iou_threshold: float = Field(
        0.3, gt=0, le=1, description="min overlap (IoU) of a box with a track's predicted box"
    )
    max_disappeared: int = Field(
        30,
        ge=0,
        le=100_000,
        description="source frames (skipped ones included) an object may go unseen before its end",
    )
    velocity_smoothing: float = Field(
        0.5, gt=0, le=1, description="weight of the latest motion in the velocity estimate"
    )
    match_buffer: float = Field(
        0.5,
        ge=0,
        le=5,
        description="second matching pass grows boxes by this x width/height (0: off); "
        "links fast objects at low frame rates",
    )


class LabelFilterSection(Section):
    """`[objects.filters.<label>]`: overrides for one label; unset keys inherit `[objects]`."""

    min_score: float | None = Field(None, ge=0, le=1, description="per-detection score floor")
    min_area: float | None = Field(None, ge=0, le=1, description="min box area, fraction of frame")
    max_area: float | None = Field(None, ge=0, le=1, description="max box area, fraction of frame")
    min_ratio: float | None = Field(None, ge=0, description="min box width/height in pixels")
    max_ratio: float | None = Field(None, ge=0, description="max box width/height in pixels")
    confirm_frames: int | None = Field(None, ge=1, le=100, description="confirmation window")
    confirm_score: float | None = Field(None, ge=0, le=1, description="median score to confirm")


class ObjectsSection(Section):
    """`[objects]`: which labels are tracked and the default limits every label gets."""

    allow: tuple[str, ...] = Field((), description="track only these labels (empty: all)")
    deny: tuple[str, ...] = Field((), description="never track these labels")
    min_score: float = Field(0.5, ge=0, le=1, description="per-detection score floor")
    min_area: float = Field(0.0, ge=0, le=1, description="min box area, fraction of the frame")
    max_area: float = Field(1.0, ge=0, le=1, description="max box area, fraction of the frame")
    min_ratio: float = Field(0.0, ge=0, description="min box width/height in pixels")
    max_ratio: float = Field(math.inf, ge=0, description="max box width/height in pixels")
    confirm_frames: int = Field(
        5, ge=1, le=100, description="observations the confirmation median looks at"
    )
    confirm_score: float = Field(
        0.6, ge=0, le=1, description="median score a track needs before its `new` event"
    )
    duplicate_overlap: float = Field(
        0.8,
        gt=0,
        le=1,
        description="of two same-label boxes where this share of the smaller lies inside the "
        "other, keep only the higher-scoring (1: only full containment)",
    )
    filters: dict[str, LabelFilterSection] = Field(
        default_factory=dict, description="per-label overrides, keyed by label"
    )

    _split_allow = field_validator("allow", "deny", mode="before")(_split)

    @model_validator(mode="after")
    def _consistent(self) -> ObjectsSection:
        both = sorted(set(self.allow) & set(self.deny))
        if both:
            raise ValueError(f"labels in both allow and deny: {', '.join(both)}")
        for label in ("", *self.filters):
            merged = self._merged(label)
            where = f"objects.filters.{label}" if label else "objects"
            for low, high in (("min_area", "max_area"), ("min_ratio", "max_ratio")):
                if merged[low] > merged[high]:
                    raise ValueError(
                        f"{where}: {low} {merged[low]} > {high} {merged[high]} "
                        "(after applying the [objects] defaults)"
                    )
        return self

    def _merged(self, label: str) -> dict[str, Any]:
        values = {name: getattr(self, name) for name in LabelFilterSection.model_fields}
        override = self.filters.get(label)
        if override is not None:
            values.update(override.model_dump(exclude_none=True))
        return values

    def rule(self, label: str) -> LabelRule:
        """The merged limits for ``label`` (unknown labels get the defaults)."""
        return LabelRule(**self._merged(label))

    def to_filter(self) -> ObjectFilter:
        per_label = {label: self.rule(label) for label in self.filters}
        return ObjectFilter(
            self.rule(""),
            per_label,
            allow=self.allow,
            deny=self.deny,
            duplicate_overlap=self.duplicate_overlap,
        )


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

    _split_labels = field_validator("labels", mode="before")(_split)

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


class SnapshotsSection(Section):
    """`[snapshots]`: JPEG of each event's best frame (MQTT `snapshot/<label>`, optional dir)."""

    enabled: bool = Field(False, description="render a snapshot for new and end events")
    crop: bool = Field(False, description="cut the picture to the object instead of the frame")
    margin: float = Field(0.2, ge=0, le=5, description="crop margin, fraction of the box size")
    max_size: int = Field(640, ge=16, le=8192, description="longest side in pixels (no upscale)")
    quality: int = Field(85, ge=1, le=100, description="JPEG quality")
    draw_boxes: bool = Field(True, description="draw the box and label on the picture")
    retain: bool = Field(True, description="publish snapshot/<label> as a retained message")
    dir: Path | None = Field(None, description="also save JPEGs here (empty: do not save)")
    max_files: int = Field(200, ge=1, le=1_000_000, description="files kept in dir")
    max_bytes: int = Field(100_000_000, ge=1, description="bytes kept in dir, oldest removed")

    def options(self) -> SnapshotOptions:
        from edgecam.snapshot import SnapshotOptions  # cv2 only when snapshots are used

        return SnapshotOptions(
            crop=self.crop,
            margin=self.margin,
            max_size=self.max_size,
            quality=self.quality,
            draw=self.draw_boxes,
        )


def check_labels(
    objects: ObjectsSection, zones: Sequence[ZoneSection], known: Collection[str]
) -> None:
    """Fail on labels the model does not have (a typo would silently filter nothing)."""
    used = {*objects.allow, *objects.deny, *objects.filters}
    for zone in zones:
        used.update(zone.labels)
    unknown = sorted(used - set(known))
    if unknown:
        raise ConfigError(
            f"objects/zones: unknown label(s) {', '.join(unknown)}",
            "use label names from the model's labels file",
        )


def build_event_engine(
    tracking: TrackingSection,
    objects: ObjectsSection,
    zones: Sequence[ZoneSection] = (),
    events: EventsSection | None = None,
    *,
    id_prefix: str = "",
    keep_frames: bool = True,
) -> EventEngine:
    """One EventEngine from the validated sections; id_prefix: e.g. the run id."""
    tracker = Tracker(
        iou_threshold=tracking.iou_threshold,
        max_disappeared=tracking.max_disappeared,
        velocity_smoothing=tracking.velocity_smoothing,
        match_buffer=tracking.match_buffer,
        id_prefix=id_prefix,
    )
    return EventEngine(
        tracker,
        objects.to_filter(),
        [z.to_zone() for z in zones],
        score_margin=(events or EventsSection.model_validate({})).score_margin,
        keep_frames=keep_frames,
    )
