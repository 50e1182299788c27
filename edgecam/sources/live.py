"""Live sources (cameras, streams): the reconnect state machine shared by every device.

A live source that worked and then fails backs off with jitter and reopens until a frame
arrives, `close()` is called or `give_up_s` passes without a frame (SourceLost). While it
reconnects it reports a heartbeat so a service can show `degraded` and keep its watchdog fed.
Only the errors a device is expected to raise (`device_errors`: unplugged, dropped, timed out)
count as "device failed"; anything else is a bug in edgecam or a driver binding and surfaces
at once, unchanged: retrying it would only turn a crash into "reconnecting" for give_up_s.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Literal

import numpy as np
import numpy.typing as npt

from edgecam.errors import SourceError, SourceLost
from edgecam.sources.base import ReconnectPolicy, SourceBase
from edgecam.types import Frame, PixelFormat

log = logging.getLogger(__name__)

LiveState = Literal["ok", "reconnecting"]


HEARTBEAT_S = 5.0


class LiveSource(SourceBase):
    """A camera or stream: grabs with a bounded wait, reconnects after failures.

    Subclasses implement _connect (raise on failure), _grab (pixels, or None / raise when the
    device failed; must return within a bounded time) and _disconnect (idempotent), and call
    _start() at the end of __init__. They set _pixel_format and _size in _connect.
    """

    live = True
    #: What this kind of device raises when it fails; subclasses add their library's errors.
    device_errors: tuple[type[Exception], ...] = (SourceError, OSError)

    def __init__(self, name: str, policy: ReconnectPolicy | None) -> None:
        super().__init__(name)
        self.policy = policy or ReconnectPolicy()
        self.state: LiveState = "ok"
        self.reconnects = 0  # successful reconnections
        self.reconnect_attempts = 0
        self._pixel_format: PixelFormat = "BGR"
        self._size: tuple[int, int] | None = None
        self._last_frame = time.monotonic()
        self._pending: Frame | None = None
        self._rng = random.Random()
        # Called with a one-line status at least every HEARTBEAT_S while reconnecting, so a
        # service can report "degraded" and keep its watchdog fed: reconnecting within
        # give_up_s is alive; a read hung in the driver never gets here and stops the pings.
        self.on_reconnecting: Callable[[str], None] | None = None

    def _connect(self) -> None:
        raise NotImplementedError

    def _grab(self) -> npt.NDArray[np.uint8] | None:
        raise NotImplementedError

    def _disconnect(self) -> None:
        raise NotImplementedError

    def _release(self) -> None:
        self._disconnect()

    def _start(self) -> None:
        """Open and grab one frame, so a device that opens but never delivers fails now."""
        with self._lock:
            try:
                self._connect()
                pixels = self._grab()
            except SourceError:
                self._disconnect()
                raise
            except self.device_errors as exc:
                self._disconnect()
                raise SourceError(f"{self.name}: cannot open: {_why(exc)}") from exc
            except BaseException:
                self._disconnect()  # free the device, then let the bug surface
                raise
            if pixels is None:
                self._disconnect()
                raise SourceError(
                    f"{self.name}: opened but delivered no frame",
                    hint="is it a capture device/stream? is another program using it?",
                )
        self._pending = self._stamp(pixels)

    def _stamp(self, pixels: npt.NDArray[np.uint8]) -> Frame:
        frame = self._frame(pixels, self._pixel_format, self._size)
        self._last_frame = frame.monotonic
        return frame

    def _try_grab(self) -> tuple[npt.NDArray[np.uint8] | None, str]:
        with self._lock:
            if self._closed.is_set():
                return None, "closed"
            try:
                pixels = self._grab()
            except self.device_errors as exc:
                return None, _why(exc)
        return pixels, "read failed" if pixels is None else ""

    def read(self) -> Frame | None:
        if self._closed.is_set():
            return None
        if self._pending is not None:
            frame, self._pending = self._pending, None
            return frame
        pixels, reason = self._try_grab()
        while pixels is None:
            if self._closed.is_set():
                return None
            pixels = self._reconnect(reason)
        return self._stamp(pixels)

    def _reconnect(self, reason: str) -> npt.NDArray[np.uint8] | None:
        """Back off and reopen until a frame arrives (returned), close() (None) or give-up."""
        self.state = "reconnecting"
        with self._lock:
            self._disconnect()  # free the device so a replugged camera can be reopened
        delay = self.policy.initial_s
        while not self._closed.is_set():
            remaining = self.policy.give_up_s - (time.monotonic() - self._last_frame)
            if remaining <= 0:
                raise SourceLost(
                    f"{self.name}: no frame for {self.policy.give_up_s:g} s after "
                    f"{self.reconnect_attempts} reconnect attempts (last error: {reason})",
                    hint="check the camera/stream, or raise the reconnect give-up time",
                )
            wait = min(delay * self._rng.uniform(0.8, 1.2), remaining)
            self.reconnect_attempts += 1
            log.warning(
                "%s: %s; reconnect attempt %d in %.1f s (giving up in %.0f s)",
                self.name,
                reason,
                self.reconnect_attempts,
                wait,
                remaining,
            )
            if self._wait_with_heartbeat(wait, reason, remaining):
                break
            pixels, reason = self._reopen()
            if pixels is not None:
                self.state = "ok"
                self.reconnects += 1
                log.warning("%s: reconnected (attempt %d)", self.name, self.reconnect_attempts)
                return pixels
            delay = min(delay * 2, self.policy.max_s)
        return None

    def _wait_with_heartbeat(self, wait: float, reason: str, remaining: float) -> bool:
        """Sleep `wait` s (True if closed meanwhile), reporting status every HEARTBEAT_S."""
        end = time.monotonic() + wait
        while True:
            if self.on_reconnecting is not None:
                left = remaining - (wait - (end - time.monotonic()))
                self.on_reconnecting(
                    f"{self.name} lost ({reason}); reconnecting, giving up in {max(left, 0):.0f} s"
                )
            step = min(HEARTBEAT_S, end - time.monotonic())
            if step <= 0:
                return False
            if self._closed.wait(step):
                return True

    def _reopen(self) -> tuple[npt.NDArray[np.uint8] | None, str]:
        with self._lock:
            if self._closed.is_set():
                return None, "closed"
            try:
                self._disconnect()
                self._connect()
                pixels = self._grab()
            except self.device_errors as exc:
                self._disconnect()
                return None, _why(exc)
            except BaseException:
                self._disconnect()
                raise
        return pixels, "reopened but no frame" if pixels is None else ""


def _why(exc: BaseException) -> str:
    """One-line reason for logs and messages."""
    if isinstance(exc, SourceError):
        return exc.message
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
