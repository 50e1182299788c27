"""`[snapshots]`: JPEGs of tracked objects, on MQTT and in a bounded directory."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field

from edgecam.config.base import Section

if TYPE_CHECKING:
    from edgecam.core.annotate import SnapshotOptions


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
        from edgecam.core.annotate import SnapshotOptions  # cv2 only when snapshots are used

        return SnapshotOptions(
            crop=self.crop,
            margin=self.margin,
            max_size=self.max_size,
            quality=self.quality,
            draw=self.draw_boxes,
        )
