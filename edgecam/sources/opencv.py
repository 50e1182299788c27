"""OpenCV sources: video files (replay), V4L2 cameras and RTSP/HTTP streams (live).

Frames are delivered as OpenCV decodes them, BGR, unconverted: preprocess converts after
resizing, which touches far fewer pixels.

How a live read() is bounded (a stuck device must not hang the capture thread):
- streams (FFmpeg backend): CAP_PROP_OPEN_TIMEOUT_MSEC and CAP_PROP_READ_TIMEOUT_MSEC are
  passed at open; FFmpeg's interrupt callback aborts a connect or read that exceeds them.
- V4L2 cameras: OpenCV waits in select() for OPENCV_VIDEOIO_V4L_SELECT_TIMEOUT seconds (its
  default is 10 s; it reads the variable once, at the first V4L2 read of the process). We set
  it, unless the user did, to the read timeout rounded up to whole seconds before the first
  camera opens. An unplugged camera fails at once (ENODEV).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from edgecam.errors import SourceError
from edgecam.logsetup import native_stderr_to_log
from edgecam.secrets import mask_url_password
from edgecam.sources.base import DEFAULT_MAX_PIXELS, ReconnectPolicy, SourceBase
from edgecam.sources.live import LiveSource
from edgecam.types import Frame

log = logging.getLogger(__name__)

V4L_SELECT_TIMEOUT_ENV = "OPENCV_VIDEOIO_V4L_SELECT_TIMEOUT"
#: Seconds a live read may deliver nothing before the camera counts as dropped (reconnect).
READ_TIMEOUT_S = 5.0
FFMPEG_OPTIONS_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"


def _stream_backend() -> int:
    """FFmpeg when this OpenCV build has it (deterministic), else let OpenCV choose."""
    return cv2.CAP_FFMPEG if cv2.videoio_registry.hasBackend(cv2.CAP_FFMPEG) else cv2.CAP_ANY


def _positive(value: float) -> float | None:
    return value if value > 0 and math.isfinite(value) else None


class VideoFileSource(SourceBase):
    """Replay of a video file: every frame in order; seq = frame index in the first pass.

    Frame size is bounded like images: the container's declared size is checked right after
    opening, before any frame is decoded (an 8K or crafted 16000x16000 stream is refused, not
    decoded into gigabytes), and every decoded frame again (a stream may change size midway).
    What FFmpeg prints while probing a file is logged at debug, not dumped on stderr.
    """

    def __init__(
        self, path: Path, *, loop: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS
    ) -> None:
        super().__init__(f"video:{path}")
        self._path = path
        self._loop = loop
        self._max_pixels = max_pixels
        self._cap = self._open()
        with native_stderr_to_log(log, "ffmpeg"):
            ok, first = self._cap.read()
        if not ok:
            self._cap.release()
            raise SourceError(
                f"{path}: not a readable video (opened, but no frame could be decoded)",
                hint="expected a video file (.mp4, .mkv, .avi ...), an image or a frames dir",
            )
        self._pending: npt.NDArray[np.uint8] | None = self._bounded(first)
        self.fps = _positive(self._cap.get(cv2.CAP_PROP_FPS))
        count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self.frame_count = count if count > 0 else None

    def _open(self) -> Any:
        if self._path.is_fifo():  # a legitimate stream (e.g. a camera tool writing to it)
            log.warning("%s is a named pipe: waiting for a writer to open it", self._path)
        with native_stderr_to_log(log, "ffmpeg"):
            cap = cv2.VideoCapture(str(self._path), _stream_backend())
        if not cap.isOpened():
            cap.release()
            raise SourceError(
                f"{self._path}: not a readable video (no decoder could open it)",
                hint="expected a video file (.mp4, .mkv, .avi ...), an image or a frames dir",
            )
        width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if width * height > self._max_pixels:
            cap.release()
            raise self._too_large(width, height)
        return cap

    def _too_large(self, width: int, height: int) -> SourceError:
        return SourceError(
            f"{self._path}: {width}x{height} video frames are {width * height / 1e6:.1f} "
            f"megapixels, over the limit of {self._max_pixels / 1e6:g}",
            hint="raise source.max_pixels (--max-pixels) if this machine has the memory, "
            "or scale the video down",
        )

    def _bounded(self, pixels: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
        if pixels.shape[0] * pixels.shape[1] > self._max_pixels:
            self._cap.release()
            raise self._too_large(pixels.shape[1], pixels.shape[0])
        return pixels

    def read(self) -> Frame | None:
        with self._lock:
            if self._closed.is_set():
                return None
            pixels, self._pending = self._pending, None
            if pixels is None:
                pixels = self._next()
            return None if pixels is None else self._frame(pixels)

    def _next(self) -> npt.NDArray[np.uint8] | None:
        ok, pixels = self._cap.read()
        if ok:
            return self._bounded(pixels)
        if not self._loop:
            return None
        # Reopen rather than seek: seeking to 0 is inexact for some codecs/containers.
        self._cap.release()
        self._cap = self._open()
        ok, pixels = self._cap.read()
        return self._bounded(pixels) if ok else None

    def _release(self) -> None:
        self._cap.release()


class OpenCVLiveSource(LiveSource):
    """A V4L2 camera (index or /dev path) or an RTSP/HTTP stream, with reconnects."""

    device_errors = (SourceError, OSError, cv2.error)  # cv2.error: a backend gave up

    def __init__(
        self,
        target: int | str,
        *,
        size: tuple[int, int] | None = None,
        fps: float | None = None,
        open_timeout_s: float = 10.0,
        read_timeout_s: float = READ_TIMEOUT_S,
        reconnect: ReconnectPolicy | None = None,
    ) -> None:
        self._is_url = isinstance(target, str) and "://" in target
        label = mask_url_password(str(target)) if self._is_url else str(target)
        super().__init__(f"url:{label}" if self._is_url else f"camera:{label}", reconnect)
        self._target = target
        self._request_size = size
        self._request_fps = fps
        self._open_timeout_ms = int(open_timeout_s * 1000)
        self._read_timeout_s = read_timeout_s
        self._cap: Any = None
        self._start()

    @property
    def _device(self) -> str:
        return f"/dev/video{self._target}" if isinstance(self._target, int) else self._target

    def _connect(self) -> None:
        self._cap = self._open_stream() if self._is_url else self._open_camera()
        self.fps = _positive(self._cap.get(cv2.CAP_PROP_FPS))

    def _open_stream(self) -> Any:
        url = str(self._target)
        if url.lower().startswith("rtsp"):
            # RTSP over UDP drops packets (smeared frames) on busy Wi-Fi; TCP is the safe default.
            os.environ.setdefault(FFMPEG_OPTIONS_ENV, "rtsp_transport;tcp")
        timeouts = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            self._open_timeout_ms,
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            int(self._read_timeout_s * 1000),
        ]
        with native_stderr_to_log(log, "ffmpeg"):
            cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG, timeouts)
        if not cap.isOpened():
            cap.release()
            raise SourceError(
                f"{self.name}: cannot open the stream (no answer within "
                f"{self._open_timeout_ms / 1000:g} s, refused, or not a video stream)",
                hint="check the URL, credentials and that the camera is reachable",
            )
        return cap

    def _open_camera(self) -> Any:
        device = self._device
        if not Path(device).exists():
            raise SourceError(
                f"{self.name}: {device} does not exist (no V4L2 camera there)",
                hint="list cameras with `v4l2-ctl --list-devices`; the Pi camera is "
                "--source picamera2",
            )
        os.environ.setdefault(V4L_SELECT_TIMEOUT_ENV, str(max(1, math.ceil(self._read_timeout_s))))
        with native_stderr_to_log(log, "opencv"):
            cap = cv2.VideoCapture(self._target, cv2.CAP_V4L2)
        if not cap.isOpened():
            cap.release()
            raise SourceError(
                f"{self.name}: cannot open {device} as a V4L2 capture device",
                hint="is it a camera node (not metadata)? busy in another program? is the "
                "user in group 'video'?",
            )
        self._apply_settings(cap)
        return cap

    def _apply_settings(self, cap: Any) -> None:
        """Ask the camera for the requested size/rate; it may pick the nearest it supports."""
        if self._request_size is not None:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self._request_size[0])
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self._request_size[1])
        if self._request_fps is not None:
            cap.set(cv2.CAP_PROP_FPS, self._request_fps)
        got = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        if self._request_size is not None and got != self._request_size:
            log.warning(
                "%s: asked for %dx%d, camera gives %dx%d", self.name, *self._request_size, *got
            )

    def _grab(self) -> npt.NDArray[np.uint8] | None:
        ok, pixels = self._cap.read()
        return pixels if ok else None

    def _disconnect(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
