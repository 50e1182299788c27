"""Motion-JPEG video files decoded at the smallest size the model still needs.

Every MJPEG frame is a full JPEG, and decoding it is most of a frame's cost at high
resolution (1080p: ~11 ms through FFmpeg on a 2-core x86, more than a detector's invoke). A
JPEG decoder can scale by 1/2, 1/4 or 1/8 inside the inverse DCT, skipping most of the work
and averaging the pixels it drops (measured: 1080p -> 960x540 in 5.4 ms). So when the model
input is several times smaller than the frame, the raw JPEG of each frame is taken from the
container (OpenCV/FFmpeg, ``CAP_PROP_FORMAT = -1``) and decoded by OpenCV at the largest
reduction that keeps the frame at least as large as the model input. Boxes stay correct:
frames carry the full size (``Frame.size``), and boxes are normalized.

Any doubt falls back to the ordinary decoder: another codec, a container that does not hand
out raw packets, or a first frame the JPEG decoder cannot read (e.g. AVI MJPEG without
Huffman tables).
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from edgecam.errors import SourceError
from edgecam.logsetup import native_stderr_to_log
from edgecam.sources.base import DEFAULT_MAX_PIXELS, SourceBase
from edgecam.types import Frame

log = logging.getLogger(__name__)

MJPEG_FOURCCS = frozenset({"MJPG", "mjpg", "MJPA", "mjpa", "JPEG", "jpeg", "AVRN", "dmb1"})
#: cv2.imread flag per reduction factor (libjpeg scales in the DCT by 1/2, 1/4, 1/8).
REDUCED = {
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}


def reduction(size: tuple[int, int], model_input: tuple[int, int]) -> int:
    """Largest of 8, 4, 2 that keeps both sides at least the model's; 1 if none does."""
    for factor in (8, 4, 2):
        if size[0] // factor >= model_input[0] and size[1] // factor >= model_input[1]:
            return factor
    return 1


def _fourcc(cap: Any) -> str:
    code = int(cap.get(cv2.CAP_PROP_FOURCC))
    return "".join(chr((code >> 8 * i) & 0xFF) for i in range(4))


def open_reduced(
    path: Path, model_input: tuple[int, int], *, loop: bool, max_pixels: int = DEFAULT_MAX_PIXELS
) -> MjpegFileSource | None:
    """An MJPEG source decoding at reduced size, or None when the file does not qualify (the
    full decoder then opens it, and refuses frames over `max_pixels` with its own message)."""
    with native_stderr_to_log(log, "ffmpeg"):
        cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    try:
        if not cap.isOpened() or _fourcc(cap) not in MJPEG_FOURCCS:
            return None
        size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    finally:
        cap.release()
    factor = reduction(size, model_input)
    if factor == 1 or size[0] * size[1] > max_pixels:
        return None
    try:
        return MjpegFileSource(path, size, factor, loop=loop)
    except SourceError as exc:
        log.debug("%s: reduced MJPEG decoding unavailable (%s); decoding in full", path, exc)
        return None


class MjpegFileSource(SourceBase):
    """Replay of an MJPEG file, each frame decoded at 1/`factor` of `size` (see module doc)."""

    def __init__(self, path: Path, size: tuple[int, int], factor: int, *, loop: bool) -> None:
        super().__init__(f"video:{path}")
        self._path, self._size, self._loop = path, size, loop
        self._flag = REDUCED[factor]
        self.codec = f"MJPG/{factor}"
        self._cap = self._open()
        ok, packet = self._cap.read()
        usable = ok and packet is not None and self._has_declared_size(packet)
        first = cv2.imdecode(packet.reshape(-1), self._flag) if usable else None
        if first is None or first.ndim != 3:
            self._cap.release()
            raise SourceError(f"{path}: the first raw frame is not a decodable JPEG")
        self._pending: npt.NDArray[np.uint8] | None = np.asarray(first, np.uint8)
        fps = float(self._cap.get(cv2.CAP_PROP_FPS))
        self.fps = fps if fps > 0 else None
        count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self.frame_count = count if count > 0 else None

    def _open(self) -> Any:
        with native_stderr_to_log(log, "ffmpeg"):
            cap = cv2.VideoCapture(str(self._path), cv2.CAP_FFMPEG)
        if not cap.isOpened() or not cap.set(cv2.CAP_PROP_FORMAT, -1):
            cap.release()
            raise SourceError(f"{self._path}: the container does not hand out raw frames")
        return cap

    def _decode(self) -> npt.NDArray[np.uint8] | None:
        """The next decodable frame; None at the end. A corrupt frame is skipped (and
        logged), as a player would, rather than ending the replay."""
        while True:
            ok, packet = self._cap.read()
            if not ok or packet is None:
                return None
            if not self._has_declared_size(packet):
                log.warning(
                    "%s: skipping a frame whose JPEG header is not %dx%d", self._path, *self._size
                )
                continue
            pixels = cv2.imdecode(packet.reshape(-1), self._flag)
            if pixels is not None and pixels.ndim == 3:
                decoded: npt.NDArray[np.uint8] = np.asarray(pixels, np.uint8)
                return decoded
            log.warning("%s: skipping a frame that is not a decodable JPEG", self._path)

    def _has_declared_size(self, packet: npt.NDArray[np.uint8]) -> bool:
        """Every frame of a stream has the size the container declares (boxes are mapped to
        it); a packet claiming another size - possibly gigapixels - is never decoded."""
        if packet.size <= 3:
            return False
        import imagesize  # heavy imports (urllib, ssl, xml): only for MJPEG files

        try:
            size = imagesize.get(io.BytesIO(packet.tobytes()))
        except (ValueError, OSError):
            return False
        return tuple(size) == self._size

    def read(self) -> Frame | None:
        with self._lock:
            if self._closed.is_set():
                return None
            pixels, self._pending = self._pending, None
            if pixels is None:
                pixels = self._decode()
            if pixels is None and self._loop:
                self._cap.release()
                self._cap = self._open()
                pixels = self._decode()
            return None if pixels is None else self._frame(pixels, "BGR", self._size)

    def _release(self) -> None:
        self._cap.release()
