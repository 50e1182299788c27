"""Raspberry Pi camera through picamera2, with the ISP doing the resize to the model input.

The camera runs two streams: `main` at scene resolution (boxes are reported in its pixels,
Frame.size) and `lores` at the model input size, which is what we deliver. Pi 5's ISP can
output RGB on lores; Pi 4 and earlier only YUV420, which picamera2 refuses otherwise. With
lores_format="auto" we ask for RGB888 and fall back to YUV420 on that refusal rather than
guessing the board.

Formats, as delivered (no conversion here; preprocess does it on the small image):
- lores "RGB888": libcamera names formats by the order of a 32-bit word, so the bytes in
  memory are B,G,R -> pixel_format "BGR" ("BGR888" would be R,G,B -> "RGB").
- lores "YUV420": I420 as (H*3//2, stride) with each row's stride padding kept; the real width
  is `pixel_width`, preprocess crops after converting. The colour space is set to SMPTE 170M
  (BT.601, limited range) when libcamera is at hand, which is what OpenCV's YUV2RGB_I420
  decodes; picamera2's default for 720p video would be Rec.709.

picamera2 is imported lazily: it exists only on Raspberry Pi OS. Tests pass a stand-in through
`camera_factory` that implements exactly the calls used here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from edgecam.errors import SourceError
from edgecam.sources.base import ReconnectPolicy
from edgecam.sources.live import LiveSource
from edgecam.sources.platform import ALTERNATIVES
from edgecam.types import PixelFormat

log = logging.getLogger(__name__)

LoresFormat = Literal["auto", "RGB888", "BGR888", "YUV420"]
#: capture_request(wait=...): a frame is due every 1/fps s, so 2 s means the camera stopped.
READ_TIMEOUT_S = 2.0
# libcamera format name -> byte order in memory (what Frame.pixel_format describes)
_DELIVERED: dict[str, PixelFormat] = {"RGB888": "BGR", "BGR888": "RGB", "YUV420": "YUV420"}


def _picamera2_class() -> Callable[[int], Any]:
    """picamera2's class; SourceError with the install hint when it is not importable. Any
    other error raised while importing it is a broken installation, not "not available": it
    surfaces unchanged."""
    try:
        from picamera2 import Picamera2
    except ImportError as exc:  # not installed, or libcamera's bindings missing inside it
        raise SourceError(
            f"picamera2 cannot be imported ({type(exc).__name__}: {exc})",
            hint="on Raspberry Pi OS: sudo apt install python3-picamera2 and create the venv "
            f"with --system-site-packages; elsewhere use --source {ALTERNATIVES}",
        ) from exc
    return Picamera2  # type: ignore[no-any-return]


def _bt601_colour_space() -> Any:
    """libcamera's SMPTE 170M colour space, or None (picamera2's default) without libcamera."""
    try:
        import libcamera
    except ImportError:
        return None
    return libcamera.ColorSpace.Smpte170m()


class Picamera2Source(LiveSource):
    """Frames from the lores stream (or main when no lores size is given) of a Pi camera."""

    # libcamera reports a camera that failed, vanished or is busy as RuntimeError (e.g.
    # "Camera frontend has timed out!", "Failed to acquire camera"); capture_request(wait=)
    # raises TimeoutError (an OSError).
    device_errors = (SourceError, OSError, RuntimeError)

    def __init__(
        self,
        camera_num: int = 0,
        *,
        main_size: tuple[int, int] = (1280, 720),
        lores_size: tuple[int, int] | None = None,
        lores_format: LoresFormat = "auto",
        fps: float | None = None,
        buffer_count: int = 4,
        read_timeout_s: float = READ_TIMEOUT_S,
        reconnect: ReconnectPolicy | None = None,
        camera_factory: Callable[[int], Any] | None = None,
    ) -> None:
        super().__init__(f"picamera2:{camera_num}", reconnect)
        self._camera_num = camera_num
        self._main_size = main_size
        self._lores_size = lores_size
        self._lores_format = lores_format
        self._buffer_count = buffer_count
        self._read_timeout_s = read_timeout_s
        self._factory = camera_factory or _picamera2_class()
        self._camera: Any = None
        self._stream = "main"
        self.fps = fps
        self._start()

    def _connect(self) -> None:
        try:
            self._camera = self._factory(self._camera_num)
        except IndexError:  # picamera2 indexes its camera list: no camera with that number
            raise SourceError(
                f"{self.name}: no camera number {self._camera_num} is connected",
                hint="check the ribbon cable and `rpicam-hello --list-cameras`",
            ) from None
        self._configure(self._camera)
        self._camera.start()

    def _configure(self, camera: Any) -> None:
        if self._lores_size is None:
            camera.configure(self._config(camera, None))
        elif self._lores_format != "auto":
            camera.configure(self._config(camera, self._lores_format))
        else:
            try:
                camera.configure(self._config(camera, "RGB888"))
            except RuntimeError as exc:  # Pi 4 and older: "lores stream must be YUV"
                log.info("%s: RGB lores refused (%s); using YUV420", self.name, exc)
                camera.configure(self._config(camera, "YUV420"))
        self._read_back(camera)

    def _config(self, camera: Any, lores_format: str | None) -> Any:
        lores = None
        if lores_format is not None and self._lores_size is not None:
            lores = {"size": tuple(self._lores_size), "format": lores_format}
        controls = {} if self.fps is None else {"FrameRate": float(self.fps)}
        return camera.create_video_configuration(
            main={"size": tuple(self._main_size), "format": "RGB888"},
            lores=lores,
            buffer_count=self._buffer_count,
            queue=False,  # capture_request waits for a fresh frame, never a queued stale one
            controls=controls,
            colour_space=_bt601_colour_space() if lores_format == "YUV420" else None,
        )

    def _read_back(self, camera: Any) -> None:
        """Take sizes/format from what the camera accepted (it may align them)."""
        main = camera.stream_configuration("main")
        lores = camera.stream_configuration("lores") if self._lores_size is not None else None
        if lores is None:
            self._stream, self._size, self.pixel_width = "main", None, None
            self._pixel_format = _DELIVERED[main["format"]]
            return
        self._stream = "lores"
        self._size = (int(main["size"][0]), int(main["size"][1]))
        self._pixel_format = _DELIVERED[lores["format"]]
        self.pixel_width = int(lores["size"][0]) if lores["format"] == "YUV420" else None
        log.info(
            "%s: main %dx%d, lores %dx%d %s (stride %s)",
            self.name,
            *self._size,
            *lores["size"],
            lores["format"],
            lores.get("stride"),
        )

    def _grab(self) -> npt.NDArray[np.uint8] | None:
        # A number for `wait` makes picamera2 raise TimeoutError instead of waiting forever
        # on a camera that stopped delivering.
        request = self._camera.capture_request(wait=self._read_timeout_s)
        try:
            return np.asarray(request.make_array(self._stream), dtype=np.uint8)
        finally:
            request.release()  # back to the camera even if make_array failed

    def _disconnect(self) -> None:
        camera, self._camera = self._camera, None
        if camera is None:
            return
        for step in (camera.stop, camera.close):
            try:
                step()
            except self.device_errors as exc:  # a camera that died may refuse to stop
                log.info("%s: %s() failed (%s); going on", self.name, step.__name__, exc)
