"""A replay delivered the way a camera delivers: for measuring live latency without a camera."""

from __future__ import annotations

import dataclasses
import time

from edgecam.sources.base import Source, SourceBase
from edgecam.types import Frame


class PacedLive(SourceBase):
    """A replay delivered like a camera: at `fps`, live, stamped when the frame 'arrives'.

    Decoding happens before the wait, so it is hidden the way a camera's exposure is; a late
    frame is delivered at once and the schedule restarts (a camera does not queue frames).
    """

    live = True

    def __init__(self, source: Source, fps: float) -> None:
        super().__init__(f"live:{source.name}")
        self._source = source
        self.fps = fps
        self._period = 1.0 / fps
        self._next: float | None = None

    def read(self) -> Frame | None:
        frame = self._source.read()
        if frame is None:
            return None
        now = time.monotonic()
        self._next = now if self._next is None else self._next + self._period
        wait = self._next - now
        if wait > 0:
            if self._closed.wait(wait):
                return None
        elif wait < -self._period:
            self._next = now
        return dataclasses.replace(frame, timestamp=time.time(), monotonic=time.monotonic())

    def _release(self) -> None:
        self._source.close()
