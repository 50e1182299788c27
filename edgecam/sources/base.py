"""What every frame source is (`Source`), the plumbing they share, and the live-source
reconnect policy. Concrete sources live in their own modules; `open.py` picks one from a spec."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, TypeVar, runtime_checkable

import numpy as np
import numpy.typing as npt

from edgecam.errors import ConfigError
from edgecam.types import Frame, PixelFormat

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
#: Largest image or video frame decoded (source.max_pixels): 50 MP (a 48 MP phone photo fits)
#: needs about 150 MB as BGR, which a 1 GB Raspberry Pi can spare.
DEFAULT_MAX_PIXELS = 50_000_000
_S = TypeVar("_S", bound="SourceBase")


@runtime_checkable
class Source(Protocol):
    """What the pipeline reads frames from.

    live: True for cameras/streams (the pipeline keeps only the latest frame), False for
    replays (every frame, in order). fps: nominal rate if known. frame_count: frames in one
    pass of a replay, if known (progress bars), None for live sources. pixel_width: real
    width of YUV420 frames whose rows carry stride padding (picamera2 lores); pass it to
    preprocess so the padding is cropped; None when rows carry no padding.
    """

    name: str
    live: bool
    fps: float | None
    frame_count: int | None
    pixel_width: int | None

    def read(self) -> Frame | None:
        """Next frame; None at the end of a replay or after close()."""
        ...

    def close(self) -> None:
        """Release the device or file; idempotent, callable from another thread."""
        ...

    def __enter__(self) -> Source: ...

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


@dataclass(frozen=True)
class ReconnectPolicy:
    """Backoff for live sources that stop delivering: waits start at initial_s and double up
    to max_s (each +-20 % jitter so many devices do not hammer one server in step); after
    give_up_s without a frame the source raises SourceLost (0 = never reconnect)."""

    initial_s: float = 0.5
    max_s: float = 30.0
    give_up_s: float = 300.0

    def __post_init__(self) -> None:
        if not self.initial_s > 0:
            raise ConfigError(f"reconnect.initial_s: {self.initial_s} must be > 0 seconds")
        if not self.max_s >= self.initial_s:
            raise ConfigError(
                f"reconnect.max_s: {self.max_s} must be >= initial_s ({self.initial_s})"
            )
        if not self.give_up_s >= 0:
            raise ConfigError(f"reconnect.give_up_s: {self.give_up_s} must be >= 0 seconds")


class SourceBase:
    """Shared plumbing: seq numbering, capture timestamps, thread-safe idempotent close."""

    live = False

    def __init__(self, name: str) -> None:
        self.name = name
        self.fps: float | None = None
        self.frame_count: int | None = None
        self.pixel_width: int | None = None
        self._seq = 0
        self._lock = threading.Lock()  # held around every device/file call
        self._closed = threading.Event()
        self._released = False

    def _frame(
        self,
        pixels: npt.NDArray[np.uint8],
        pixel_format: PixelFormat = "BGR",
        size: tuple[int, int] | None = None,
    ) -> Frame:
        """Stamp a just-captured array: next seq, wall and monotonic capture time."""
        frame = Frame(
            pixels=pixels,
            seq=self._seq,
            timestamp=time.time(),
            monotonic=time.monotonic(),
            source=self.name,
            pixel_format=pixel_format,
            size=size,
        )
        self._seq += 1
        return frame

    def _release(self) -> None:
        """Free the device/file; called once, with the lock held."""

    def close(self) -> None:
        self._closed.set()  # first, so a read blocked in a backoff wait returns now
        with self._lock:
            if not self._released:
                self._released = True
                self._release()

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"
