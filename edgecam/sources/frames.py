"""Recorded stills: a directory of frames replayed in natural name order, or one image.

Images are decoded with OpenCV (BGR, like the video sources). In a directory replay a corrupt
frame is logged by name, counted in `skipped` and passed over, so one bad file does not end a
long run; a directory in which a whole pass yields no frame is an error, as is a single image
that cannot be decoded.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from edgecam.errors import SourceError
from edgecam.sources.base import IMAGE_EXTENSIONS, SourceBase
from edgecam.types import Frame

log = logging.getLogger(__name__)


def natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key putting frame_2 before frame_10: digit runs compare as numbers.

    Each part is tagged (0 = number, 1 = text) so numbers and text never compare directly.
    """
    parts = re.split(r"(\d+)", name.casefold())
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in parts if part)


def list_frames(directory: Path) -> list[Path]:
    """Image files directly in `directory` (not recursive), in natural name order."""
    files = [p for p in directory.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()]
    return sorted(files, key=lambda p: (natural_key(p.name), p.name))


def decode_image(path: Path) -> npt.NDArray[np.uint8]:
    """Decode an image file to (H, W, 3) uint8 BGR, or raise SourceError naming the file.

    Reads the bytes ourselves so permission/IO errors are told apart from corrupt data.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from exc
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if decoded is None:
        raise SourceError(
            f"{path}: cannot be decoded as an image ({len(data)} bytes; corrupt, truncated "
            "or not an image)"
        )
    return np.asarray(decoded, dtype=np.uint8)  # already uint8: no copy; narrows cv2's type


class FramesDirSource(SourceBase):
    """Replay of the image files of a directory; seq counts delivered frames."""

    def __init__(self, directory: Path, *, loop: bool = False) -> None:
        super().__init__(f"frames:{directory}")
        self._directory = directory
        self._files = list_frames(directory)
        if not self._files:
            patterns = " ".join(f"*{ext}" for ext in IMAGE_EXTENSIONS)
            raise SourceError(
                f"{directory}: no frames found (looked for {patterns})",
                hint="point --source at the directory that holds the images",
            )
        self._loop = loop
        self._index = 0
        self._decoded_this_pass = 0
        self.frame_count = len(self._files)
        self.skipped = 0  # corrupt/unreadable files passed over

    def read(self) -> Frame | None:
        with self._lock:
            while not self._closed.is_set():
                if self._index == len(self._files) and not self._restart():
                    return None
                path = self._files[self._index]
                self._index += 1
                try:
                    pixels = decode_image(path)
                except SourceError as exc:
                    self.skipped += 1
                    log.warning("skipping frame %s (%d skipped so far)", exc, self.skipped)
                    continue
                self._decoded_this_pass += 1
                return self._frame(pixels)
        return None

    def _restart(self) -> bool:
        """At the end of a pass: True to go round again (loop), False to end the replay."""
        if self._decoded_this_pass == 0:
            raise SourceError(
                f"{self._directory}: none of its {len(self._files)} image files could be decoded"
            )
        if not self._loop:
            return False
        self._index = 0
        self._decoded_this_pass = 0
        return True


class ImageSource(SourceBase):
    """One image: a single frame, or the same frame forever with loop (demo, bench)."""

    def __init__(self, path: Path, *, loop: bool = False) -> None:
        super().__init__(f"image:{path}")
        self._pixels = decode_image(path)
        # Every looped frame shares this array: read-only makes in-place drawing fail loudly.
        self._pixels.flags.writeable = False
        self._loop = loop
        self.frame_count = 1

    def read(self) -> Frame | None:
        with self._lock:
            if self._closed.is_set() or (self._seq > 0 and not self._loop):
                return None
            return self._frame(self._pixels)
