"""`[tracking]`: how detections are linked into tracked objects across frames."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from edgecam.config.base import Section

if TYPE_CHECKING:
    pass


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
