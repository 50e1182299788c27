"""`open_source(spec)`: turn a `--source` value into a `Source`.

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
import re
from pathlib import Path
from typing import Literal

from edgecam.errors import SourceError
from edgecam.secrets import mask_url_password, with_url_password
from edgecam.sources.base import DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, ReconnectPolicy, Source
from edgecam.sources.platform import ALTERNATIVES, resolve_default_source

log = logging.getLogger(__name__)

URL_SCHEMES = ("rtsp", "rtsps", "http", "https")


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
            shown = mask_url_password(text)
            raise SourceError(
                f"bad source {shown!r}: unsupported URL scheme {scheme.group(1)!r}",
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
    max_pixels: int = DEFAULT_MAX_PIXELS,
    password: str | None = None,
) -> Source:
    """Open the source a spec names (see the module docstring).

    width/height/fps are requests to cameras (picamera2 main stream, V4L2) and are ignored
    by replays and URLs. model_input (width, height) sizes the picamera2 lores stream so the
    ISP does the resize. loop restarts replays at the end. reconnect and read_timeout_s (None:
    the source's own default) apply to live sources. max_pixels bounds the frames of images,
    frames dirs and video files (checked from their headers, before decoding). password: of a
    stream URL written as scheme://USER@host/ (read from a file or the environment, so it is
    never on the command line); the source's name never shows it.
    """
    if (width is None) != (height is None):
        raise SourceError(f"camera size needs both width and height, got {width}x{height}")
    text = spec.strip() if spec else ""
    kind, target = parse_spec(text or resolve_default_source())
    size = (width, height) if width is not None and height is not None else None
    log.debug("source %r is a %s source", mask_url_password(target), kind)
    if kind == "picamera2":
        from edgecam.sources.picamera2 import READ_TIMEOUT_S, Picamera2Source

        return Picamera2Source(
            int(target),
            main_size=size or (1280, 720),
            lores_size=model_input,
            fps=fps,
            reconnect=reconnect,
            read_timeout_s=READ_TIMEOUT_S if read_timeout_s is None else read_timeout_s,
        )
    if kind in ("camera", "url"):
        from edgecam.sources.opencv import READ_TIMEOUT_S as CV_TIMEOUT_S
        from edgecam.sources.opencv import OpenCVLiveSource

        device: int | str = int(target) if target.isdigit() else target
        if password is not None:
            if kind != "url":
                raise SourceError(f"source.password_*: {target} is not a stream URL")
            try:
                device = with_url_password(target, password)
            except ValueError as exc:
                raise SourceError(f"source {mask_url_password(target)!r}: {exc}") from None
        return OpenCVLiveSource(
            device,
            size=size,
            fps=fps,
            reconnect=reconnect,
            read_timeout_s=CV_TIMEOUT_S if read_timeout_s is None else read_timeout_s,
        )
    if kind == "video":
        from edgecam.sources.mjpeg import open_reduced
        from edgecam.sources.opencv import VideoFileSource

        reduced = (
            open_reduced(Path(target), model_input, loop=loop, max_pixels=max_pixels)
            if model_input
            else None
        )
        return reduced or VideoFileSource(Path(target), loop=loop, max_pixels=max_pixels)
    from edgecam.sources.frames import FramesDirSource, ImageSource

    if kind == "frames":
        return FramesDirSource(Path(target), loop=loop, max_pixels=max_pixels)
    return ImageSource(Path(target), loop=loop, max_pixels=max_pixels)
