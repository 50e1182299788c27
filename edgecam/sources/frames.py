"""Recorded stills: a directory of frames replayed in natural name order, or one image.

Images are decoded with OpenCV (BGR, like the video sources), but only after their header said
how big they are: decoding needs width x height x 3 bytes whatever the file size (a 3.5 MB
JPEG of 30000 x 30000 pixels took 5.3 GB), so anything over `max_pixels` is refused before a
byte of it is decoded. Only the formats edgecam documents (JPEG, PNG, BMP, WebP) are decoded,
recognised by their content, not their name: OpenCV would otherwise decode TIFF, PPM, EXR...
behind an image extension without any such check.

In a directory replay a corrupt or oversized frame is logged by name, counted in `skipped` and
passed over, so one bad file does not end a long recording (the same rule for both: it is a
property of one file, not of the run); a directory in which a whole pass yields no frame is an
error, as is a single image that cannot be decoded or is too large.
"""

from __future__ import annotations

import logging
import os
import re
import stat
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np
import numpy.typing as npt

from edgecam.errors import SourceError
from edgecam.logsetup import native_stderr_to_log
from edgecam.sources.base import DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, SourceBase
from edgecam.types import Frame

log = logging.getLogger(__name__)

#: What a file's first bytes must be for each format edgecam decodes.
_SIGNATURES = (
    ("JPEG", b"\xff\xd8\xff", 0),
    ("PNG", b"\x89PNG\r\n\x1a\n", 0),
    ("BMP", b"BM", 0),
    ("WebP", b"WEBP", 8),  # after RIFF + size
)
#: Bytes a compressed image may take per pixel (16-bit RGBA PNG, incompressible) plus room for
#: metadata (EXIF, ICC, thumbnails): a file larger than this for its pixel limit is not read.
_BYTES_PER_PIXEL = 8
_METADATA_BYTES = 16 << 20


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


class ImageTooLarge(SourceError):
    """An image whose header names more pixels than the configured limit."""


def _format_of(head: bytes) -> str | None:
    for name, magic, offset in _SIGNATURES:
        if head[offset : offset + len(magic)] == magic and (name != "WebP" or head[:4] == b"RIFF"):
            return name
    return None


def _open_regular(path: Path) -> BinaryIO:
    """Open for reading, refusing what is not a regular file: a FIFO would block the open
    forever and a device (/dev/zero) never ends."""
    try:
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):
            raise SourceError(f"{path}: not a regular file, expected an image file")
        return path.open("rb")
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from exc


def check_image(path: Path, handle: BinaryIO, max_pixels: int) -> tuple[str, int, int]:
    """(format, width, height) from the header, or SourceError: not a JPEG/PNG/BMP/WebP, no
    readable size, or more than `max_pixels` (ImageTooLarge). Reads only the header."""
    head = handle.read(16)
    kind = _format_of(head)
    if kind is None:
        raise SourceError(
            f"{path}: not a JPEG, PNG, BMP or WebP image (by its content; {len(head)} bytes read)"
        )
    import imagesize  # imports urllib/ssl/xml for features edgecam never uses: only when needed

    width, height = imagesize.get(handle)
    if width <= 0 or height <= 0:
        raise SourceError(f"{path}: {kind} header without a valid size (corrupt or truncated)")
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"{path}: {width}x{height} {kind} is {width * height / 1e6:.1f} megapixels, over "
            f"the limit of {max_pixels / 1e6:g}",
            hint="raise source.max_pixels (--max-pixels) if this machine has ~3 bytes of "
            "memory per pixel to spare, or scale the image down",
        )
    return kind, width, height


def decode_image(path: Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> npt.NDArray[np.uint8]:
    """Decode an image file to (H, W, 3) uint8 BGR, or raise SourceError naming the file.

    The header is checked first (check_image), so memory stays bounded by `max_pixels`; the
    bytes are read by us so permission/IO errors are told apart from corrupt data.
    """
    with _open_regular(path) as handle:
        try:
            _, width, height = check_image(path, handle, max_pixels)
            size = os.fstat(handle.fileno()).st_size
            if size > _BYTES_PER_PIXEL * width * height + _METADATA_BYTES:
                raise SourceError(f"{path}: {size} bytes is far too large for {width}x{height}")
            handle.seek(0)
            data = handle.read()
        except OSError as exc:
            raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from exc
    with native_stderr_to_log(log, f"decoding {path.name}"):  # libjpeg/libpng warnings
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if decoded is None or decoded.shape[0] * decoded.shape[1] > max_pixels:
        raise SourceError(
            f"{path}: cannot be decoded as an image ({len(data)} bytes; corrupt, truncated "
            "or not an image)"
        )
    return np.asarray(decoded, dtype=np.uint8)  # already uint8: no copy; narrows cv2's type


class FramesDirSource(SourceBase):
    """Replay of the image files of a directory; seq counts delivered frames."""

    def __init__(
        self, directory: Path, *, loop: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS
    ) -> None:
        super().__init__(f"frames:{directory}")
        self._max_pixels = max_pixels
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
                    pixels = decode_image(path, max_pixels=self._max_pixels)
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

    def __init__(
        self, path: Path, *, loop: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS
    ) -> None:
        super().__init__(f"image:{path}")
        self._pixels = decode_image(path, max_pixels=max_pixels)
        # Every looped frame shares this array: read-only makes in-place drawing fail loudly.
        self._pixels.flags.writeable = False
        self._loop = loop
        self.frame_count = 1

    def read(self) -> Frame | None:
        with self._lock:
            if self._closed.is_set() or (self._seq > 0 and not self._loop):
                return None
            return self._frame(self._pixels)
