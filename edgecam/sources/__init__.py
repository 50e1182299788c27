"""Frame sources: `open_source(spec)` turns a `--source` value into a `Source`.

Spec grammar (checked in this order):

- none / empty     the Pi camera (`picamera2:0`) on a Raspberry Pi where picamera2 imports;
                   anywhere else a SourceError that lists the alternatives below
- `picamera2[:N]`  Pi camera N through picamera2 (live)
- `N`              V4L2 camera /dev/videoN through OpenCV (live)
- `/dev/...`       an existing character device, e.g. /dev/video2 or a stable
                   /dev/v4l/by-id/... link (live)
- `rtsp://`, `rtsps://`, `http://`, `https://`   network stream through OpenCV/FFmpeg (live)
- DIR              a directory of recorded frames (*.jpg *.jpeg *.png *.bmp *.webp), natural
                   name order: frame_2 before frame_10 (replay)
- IMAGE            one image file with one of those extensions (replay: one frame)
- VIDEO            any other existing file, decoded by OpenCV/FFmpeg (replay)

Replay sources deliver every frame in order and return None at the end (`loop=True` restarts
them). Live sources keep delivering; when a device that worked fails they reconnect with
exponential backoff and jitter (`ReconnectPolicy`), expose `state` ("ok" | "reconnecting") and
`reconnects`, and raise SourceLost once `give_up_s` passed without a frame. Failing to open any
source at start is a SourceError (exit status 2).

Every source may be closed from another thread while a `read()` is blocked in it; that read
then returns None within the source's read timeout.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal, Protocol, TypeVar, runtime_checkable

import numpy as np
import numpy.typing as npt

from edgecam.errors import ConfigError, SourceError, SourceLost
from edgecam.sources.platform import ALTERNATIVES, resolve_default_source
from edgecam.types import Frame, PixelFormat

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
URL_SCHEMES = ("rtsp", "rtsps", "http", "https")
LiveState = Literal["ok", "reconnecting"]
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


HEARTBEAT_S = 5.0


class LiveSource(SourceBase):
    """A camera or stream: grabs with a bounded wait, reconnects after failures.

    Subclasses implement _connect (raise on failure), _grab (pixels, or None / raise when the
    device failed; must return within a bounded time) and _disconnect (idempotent), and call
    _start() at the end of __init__. They set _pixel_format and _size in _connect.
    """

    live = True

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
            except Exception as exc:
                self._disconnect()
                raise SourceError(f"{self.name}: cannot open: {_why(exc)}") from exc
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
            except Exception as exc:
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
            except Exception as exc:
                self._disconnect()
                return None, _why(exc)
        return pixels, "reopened but no frame" if pixels is None else ""


def _why(exc: BaseException) -> str:
    """One-line reason for logs and messages."""
    if isinstance(exc, SourceError):
        return exc.message
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def mask_url(url: str) -> str:
    """The URL with any password replaced by *** (source names end up in logs and MQTT)."""
    return re.sub(r"^([a-zA-Z][a-zA-Z0-9+.-]*://[^/@:]*):[^/@]*@", r"\1:***@", url)


SpecKind = Literal["picamera2", "camera", "url", "frames", "image", "video"]


def parse_spec(spec: str) -> tuple[SpecKind, str]:
    """Classify a non-empty spec per the module grammar; the second item is the normalized
    target (camera number, device path, URL or absolute file path)."""
    text = spec.strip()
    if re.match(r"picamera2(:|$)", text, re.IGNORECASE):
        match = re.fullmatch(r"picamera2(?::(\d+))?", text, re.IGNORECASE)
        if match is None:
            raise SourceError(
                f"bad source {spec!r}: expected picamera2 or picamera2:N (camera number)"
            )
        return "picamera2", match.group(1) or "0"
    if re.fullmatch(r"\d+", text):
        return "camera", str(int(text))
    scheme = re.match(r"([a-zA-Z][a-zA-Z0-9+.-]*)://", text)
    if scheme is not None:
        if scheme.group(1).lower() not in URL_SCHEMES:
            raise SourceError(
                f"bad source {mask_url(text)!r}: unsupported URL scheme {scheme.group(1)!r}",
                hint="use rtsp://, rtsps://, http:// or https://",
            )
        return "url", text
    path = Path(text).expanduser()
    if text.startswith("/dev/") and path.is_char_device():
        return "camera", text
    if not path.exists():
        raise SourceError(
            f"source {text!r} does not exist",
            hint=f"expected {ALTERNATIVES} | picamera2",
        )
    path = path.resolve()
    if path.is_dir():
        return "frames", str(path)
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        return "image", str(path)
    return "video", str(path)


def open_source(
    spec: str | None,
    *,
    width: int | None = None,
    height: int | None = None,
    fps: float | None = None,
    loop: bool = False,
    model_input: tuple[int, int] | None = None,
    reconnect: ReconnectPolicy | None = None,
    read_timeout_s: float | None = None,
) -> Source:
    """Open the source a spec names (see the module docstring).

    width/height/fps are requests to cameras (picamera2 main stream, V4L2) and are ignored
    by replays and URLs. model_input (width, height) sizes the picamera2 lores stream so the
    ISP does the resize. loop restarts replays at the end. reconnect and read_timeout_s (None:
    the source's own default) apply to live sources.
    """
    if (width is None) != (height is None):
        raise SourceError(f"camera size needs both width and height, got {width}x{height}")
    text = spec.strip() if spec else ""
    kind, target = parse_spec(text or resolve_default_source())
    size = (width, height) if width is not None and height is not None else None
    log.debug("source %r is a %s source", mask_url(target), kind)
    if kind == "picamera2":
        from edgecam.sources import picamera2

        return picamera2.Picamera2Source(
            int(target),
            main_size=size or (1280, 720),
            lores_size=model_input,
            fps=fps,
            reconnect=reconnect,
            read_timeout_s=picamera2.READ_TIMEOUT_S if read_timeout_s is None else read_timeout_s,
        )
    if kind in ("camera", "url"):
        from edgecam.sources import opencv

        device: int | str = int(target) if target.isdigit() else target
        return opencv.OpenCVLiveSource(
            device,
            size=size,
            fps=fps,
            reconnect=reconnect,
            read_timeout_s=opencv.READ_TIMEOUT_S if read_timeout_s is None else read_timeout_s,
        )
    if kind == "video":
        from edgecam.sources.opencv import VideoFileSource

        return VideoFileSource(Path(target), loop=loop)
    from edgecam.sources.frames import FramesDirSource, ImageSource

    if kind == "frames":
        return FramesDirSource(Path(target), loop=loop)
    return ImageSource(Path(target), loop=loop)


__all__ = [
    "ALTERNATIVES",
    "IMAGE_EXTENSIONS",
    "LiveSource",
    "ReconnectPolicy",
    "Source",
    "SourceBase",
    "mask_url",
    "open_source",
    "parse_spec",
    "resolve_default_source",
]
