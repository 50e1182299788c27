"""Pictures of what was seen: draw boxes and labels, crop, shrink, JPEG-encode (pure).

Array in, bytes out, nothing touches the disk (the bounded snapshot directory is
:mod:`edgecam.sinks.snapshots`), so the same code serves MQTT ``snapshot/<label>`` payloads,
``edgecam detect --annotate`` and the tests.

Images are handled as OpenCV BGR because ``cv2.imencode`` expects BGR; frames arrive as BGR,
RGB or YUV420 (edgecam.core.preprocess.to_rgb does the conversion).
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from edgecam.core.events import Event
from edgecam.core.preprocess import to_rgb
from edgecam.types import Detections, Frame

U8 = npt.NDArray[np.uint8]
Box = Sequence[float]
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True, slots=True)
class SnapshotOptions:
    """crop: cut to the object's box plus ``margin`` (fraction of the box size on each side);
    max_size: longest side in pixels (never upscaled); quality: JPEG 1-100; draw: box + label."""

    crop: bool = False
    margin: float = 0.2
    max_size: int = 640
    quality: int = 85
    draw: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.quality <= 100:
            raise ValueError(f"JPEG quality must be 1-100, got {self.quality}")
        if self.max_size < 16:
            raise ValueError(f"max_size must be >= 16 pixels, got {self.max_size}")
        if not 0.0 <= self.margin <= 5.0:
            raise ValueError(f"margin must be in [0, 5] box sizes, got {self.margin}")


def to_bgr(frame: Frame) -> U8:
    """The frame's pixels as (H, W, 3) BGR (the input itself when already BGR)."""
    if frame.pixel_format == "BGR":
        return frame.pixels
    rgb = to_rgb(frame.pixels, frame.pixel_format)
    out: U8 = np.ascontiguousarray(rgb[..., ::-1])
    return out


def label_colour(label: str) -> tuple[int, int, int]:
    """A stable, saturated BGR colour per label (crc32: the same in every process)."""
    hue = zlib.crc32(label.encode()) % 180
    hsv = np.array([[[hue, 220, 255]]], np.uint8)
    b, g, r = (int(v) for v in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])
    return b, g, r


def box_pixels(xyxy: Box, width: int, height: int) -> tuple[int, int, int, int]:
    """Normalized xyxy → integer pixel corners clipped to a width x height image."""
    x0, y0, x1, y1 = (float(v) for v in xyxy)
    return (
        min(max(round(x0 * width), 0), width - 1),
        min(max(round(y0 * height), 0), height - 1),
        min(max(round(x1 * width), 0), width - 1),
        min(max(round(y1 * height), 0), height - 1),
    )


def draw_box(image: U8, xyxy: Box, text: str, colour: tuple[int, int, int]) -> None:
    """Draw one box with a filled caption in place; line width scales with the image."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = box_pixels(xyxy, w, h)
    thick = max(1, round(min(w, h) / 300))
    cv2.rectangle(image, (x0, y0), (x1, y1), colour, thick, cv2.LINE_AA)
    if not text:
        return
    scale = max(0.4, min(w, h) / 800)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    ty = y0 - 2 if y0 - th - base - 2 >= 0 else min(y0 + th + base + 2, h - 1)
    cv2.rectangle(image, (x0, ty - th - base), (x0 + tw + 2, ty + 2), colour, cv2.FILLED)
    cv2.putText(
        image, text, (x0 + 1, ty - base + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick
    )


def annotate(image: U8, detections: Detections) -> U8:
    """A copy of a BGR image with every detection drawn (``edgecam detect --annotate``)."""
    out = image.copy()
    for i in range(len(detections)):
        label = detections.label[i]
        text = f"{label} {float(detections.score[i]):.2f}"
        draw_box(out, detections.xyxy[i], text, label_colour(label))
    return out


def crop_rect(xyxy: Box, width: int, height: int, margin: float) -> tuple[int, int, int, int]:
    """Pixel rectangle (x0, y0, x1, y1), end-exclusive, around a box grown by ``margin``.

    Edges within 1e-3 px of a whole pixel snap to it: float32 boxes (492/540 → 492.00002)
    must not gain a row.
    """
    x0, y0, x1, y1 = (float(v) for v in xyxy)
    dx, dy = (x1 - x0) * margin, (y1 - y0) * margin
    eps = 1e-3
    left = min(max(math.floor((x0 - dx) * width + eps), 0), width - 1)
    top = min(max(math.floor((y0 - dy) * height + eps), 0), height - 1)
    right = min(max(math.ceil((x1 + dx) * width - eps), left + 1), width)
    bottom = min(max(math.ceil((y1 + dy) * height - eps), top + 1), height)
    return left, top, right, bottom


def fit(image: U8, max_size: int) -> U8:
    """Shrink so the longest side is at most ``max_size`` (INTER_AREA); never enlarge."""
    h, w = image.shape[:2]
    scale = max_size / max(w, h)
    if scale >= 1.0:
        return image
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    out: U8 = np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA), np.uint8)
    return out


def encode_jpeg(image: U8, quality: int) -> bytes:
    """BGR (or grey) image → JPEG bytes."""
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError(f"JPEG encoding failed for an image of shape {image.shape}")
    return bytes(buf)


def render_snapshot(
    frame: Frame, xyxy: Box, label: str, options: SnapshotOptions, *, score: float | None = None
) -> bytes:
    """JPEG of ``frame`` with one object's box (normalized xyxy) drawn and optionally cropped."""
    image = to_bgr(frame).copy()
    h, w = image.shape[:2]
    if options.draw:
        text = label if score is None else f"{label} {score:.2f}"
        draw_box(image, xyxy, text, label_colour(label))
    if options.crop:
        x0, y0, x1, y1 = crop_rect(xyxy, w, h, options.margin)
        image = image[y0:y1, x0:x1]
    return encode_jpeg(fit(image, options.max_size), options.quality)


def event_snapshot(event: Event, options: SnapshotOptions) -> bytes | None:
    """JPEG of the event's best frame, or None when the engine was given no pixels."""
    best = event.best
    if best.frame is None:
        return None
    return render_snapshot(best.frame, best.xyxy, event.label, options, score=best.score)


def snapshot_filename(event: Event) -> str:
    """``<best frame epoch ms>-<label>-<track id>.jpg``: sorts by time, one file per object."""
    stem = f"{round(event.best.timestamp * 1000)}-{event.label}-{event.track_id}"
    return _UNSAFE.sub("_", stem) + ".jpg"
