"""Motion gate: decide per frame whether the scene changed enough to be worth an inference.

Pure (numpy only, time is an argument). The frame is reduced to a small grey thumbnail by
strided sampling (a view, no full-size copy) and compared with the thumbnail of the last frame
that was let through, not the previous frame: slow movement accumulates until it crosses the
threshold instead of hiding below it frame after frame, and sensor noise never accumulates.
A forced refresh bounds how stale the published state can get on a static scene.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edgecam.types import Frame

# ITU-R BT.601 luma weights scaled to 256, applied in int32 to avoid float conversion.
_LUMA = {"RGB": (77, 150, 29), "BGR": (29, 150, 77)}


def grey_thumbnail(frame: Frame, width: int) -> npt.NDArray[np.int16]:
    """(h, w) int16 luma of `frame`, about `width` pixels wide, by strided sampling.

    YUV420 frames already carry luma in their first H rows, so nothing is converted.
    """
    w, h = frame.pixel_size
    step = max(1, w // width)
    if frame.pixel_format == "YUV420":
        y_plane: npt.NDArray[np.uint8] = frame.pixels[:h:step, ::step]
        return y_plane.astype(np.int16)
    small = frame.pixels[::step, ::step].astype(np.int32)
    r, g, b = _LUMA[frame.pixel_format]
    luma: npt.NDArray[np.int32] = (small[..., 0] * r + small[..., 1] * g + small[..., 2] * b) >> 8
    return luma.astype(np.int16)


@dataclass(frozen=True, slots=True)
class MotionDecision:
    """Why a frame was let through (or not); `changed` is the fraction of changed pixels."""

    run: bool
    changed: float
    reason: str  # "first", "motion", "refresh", "static"


class MotionGate:
    """Stateful per-source gate; not thread-safe (call it from the capture thread only)."""

    def __init__(
        self, *, threshold: int, min_area: float, refresh_s: float, width: int = 160
    ) -> None:
        if not 1 <= threshold <= 255:
            raise ValueError(f"motion threshold must be 1..255, got {threshold}")
        if not 0 < min_area <= 1:
            raise ValueError(f"motion min_area must be in (0, 1], got {min_area}")
        if refresh_s <= 0:
            raise ValueError(f"motion refresh_s must be > 0, got {refresh_s}")
        self.threshold = threshold
        self.min_area = min_area
        self.refresh_s = refresh_s
        self.width = width
        self._reference: npt.NDArray[np.int16] | None = None
        self._last_run = 0.0

    def check(self, frame: Frame, now: float) -> MotionDecision:
        """Compare `frame` with the last frame let through; `now` is a monotonic time in s."""
        thumb = grey_thumbnail(frame, self.width)
        ref = self._reference
        if ref is None or ref.shape != thumb.shape:
            return self._accept(thumb, now, 1.0, "first")
        changed = float(np.count_nonzero(np.abs(thumb - ref) >= self.threshold)) / thumb.size
        if changed >= self.min_area:
            return self._accept(thumb, now, changed, "motion")
        if now - self._last_run >= self.refresh_s:
            return self._accept(thumb, now, changed, "refresh")
        return MotionDecision(False, changed, "static")

    def _accept(
        self, thumb: npt.NDArray[np.int16], now: float, changed: float, reason: str
    ) -> MotionDecision:
        self._reference = thumb
        self._last_run = now
        return MotionDecision(True, changed, reason)
