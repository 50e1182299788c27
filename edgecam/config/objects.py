"""`[objects]` and `[objects.filters.<label>]`: which detections become tracked objects."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator, model_validator

from edgecam.config.base import Section, split_list
from edgecam.core.filters import LabelRule, ObjectFilter

if TYPE_CHECKING:
    pass


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

    _split_allow = field_validator("allow", "deny", mode="before")(split_list)

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
