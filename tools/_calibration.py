"""Representative data for int8 calibration: still images from a directory and video frames.

Activation ranges are set from these samples, so they should look like what the camera will
see; a few dozen varied frames are enough for MobileNet-sized models.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from edgecam.errors import SourceError, UsageError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v"})
RGB = npt.NDArray[np.uint8]


def list_images(directory: Path) -> list[Path]:
    """Image files directly in ``directory``, sorted; UsageError when there are none."""
    if not directory.is_dir():
        raise UsageError(
            f"calibration directory {directory} does not exist",
            "pass a directory of .jpg/.png images (or a video file)",
        )
    files = sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UsageError(
            f"calibration directory {directory} has no images "
            f"(looked for {', '.join(sorted(IMAGE_SUFFIXES))})",
            "put a few dozen representative camera images there",
        )
    return files


def read_rgb(path: Path) -> RGB:
    """One image as (H, W, 3) uint8 RGB; SourceError if OpenCV cannot decode it."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise SourceError(f"cannot decode image {path}", "is it a valid JPEG/PNG?")
    return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def sample_video(path: Path, count: int) -> list[RGB]:
    """``count`` frames evenly spaced over the whole video, RGB."""
    cap = cv2.VideoCapture(str(path))
    try:
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        if not cap.isOpened() or total <= 0:
            raise SourceError(f"cannot open video {path}", "pass a video OpenCV can decode")
        wanted = np.unique(np.linspace(0, total - 1, num=max(count, 1)).round().astype(int))
        frames: list[RGB] = []
        for index in wanted:
            cap.set(cv2.CAP_PROP_POS_FRAMES, int(index))
            ok, bgr = cap.read()
            if ok:
                frames.append(np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
        if not frames:
            raise SourceError(f"no frame could be decoded from {path}")
        return frames
    finally:
        cap.release()


def check_sources(sources: Sequence[Path]) -> None:
    """Refuse what :func:`load_frames` would refuse, without decoding anything: cheap enough
    to run before a long download."""
    if not sources:
        raise UsageError("no calibration data given", "pass --calibration DIR_OR_VIDEO")
    for src in sources:
        if src.is_dir():
            list_images(src)
        elif not (src.is_file() and src.suffix.lower() in VIDEO_SUFFIXES | IMAGE_SUFFIXES):
            raise _not_a_source(src)


def _not_a_source(src: Path) -> UsageError:
    return UsageError(
        f"calibration source {src} is not an image directory, image or video",
        "pass a directory of images or a .mp4/.avi file",
    )


def load_frames(sources: Sequence[Path], limit: int, video_frames: int = 16) -> list[RGB]:
    """Up to ``limit`` RGB frames from image directories, single images and videos.

    Several sources are interleaved so a small limit still covers all of them.
    """
    if not sources:
        raise UsageError("no calibration data given", "pass --calibration DIR_OR_VIDEO")
    per_source: list[Iterator[RGB]] = []
    for src in sources:
        if src.is_dir():
            per_source.append(read_rgb(p) for p in list_images(src))
        elif src.suffix.lower() in VIDEO_SUFFIXES:
            per_source.append(iter(sample_video(src, video_frames)))
        elif src.suffix.lower() in IMAGE_SUFFIXES and src.is_file():
            per_source.append(iter([read_rgb(src)]))
        else:
            raise _not_a_source(src)
    frames: list[RGB] = []
    while per_source and len(frames) < limit:
        for it in list(per_source):
            frame = next(it, None)
            if frame is None:
                per_source.remove(it)
            elif len(frames) < limit:
                frames.append(frame)
    log.info("calibration: %d frames from %d source(s)", len(frames), len(sources))
    return frames


def resize_stretch(frame: RGB, width: int, height: int) -> RGB:
    interp = cv2.INTER_AREA if frame.shape[1] >= 2 * width else cv2.INTER_LINEAR
    return np.asarray(cv2.resize(frame, (width, height), interpolation=interp), np.uint8)


def resize_center_crop(frame: RGB, width: int, height: int) -> RGB:
    """Largest centred crop with the target aspect ratio, then resize (ImageNet eval style)."""
    h, w = frame.shape[:2]
    if w * height > h * width:
        cw, ch = max(1, round(h * width / height)), h
    else:
        cw, ch = w, max(1, round(w * height / width))
    x0, y0 = (w - cw) // 2, (h - ch) // 2
    return resize_stretch(frame[y0 : y0 + ch, x0 : x0 + cw], width, height)


def batch(frames: Sequence[RGB], width: int, height: int, crop: bool) -> RGB:
    """(N, H, W, 3) uint8 at model size; ``crop`` for classifiers, stretch for SSD."""
    fit = resize_center_crop if crop else resize_stretch
    return np.stack([fit(f, width, height) for f in frames]).astype(np.uint8)


def to_unit_range(images: RGB) -> npt.NDArray[np.float32]:
    """uint8 pixels → MobileNet's float input range [-1, 1] (x / 127.5 − 1)."""
    return (images.astype(np.float32) / np.float32(127.5) - np.float32(1.0)).astype(np.float32)
