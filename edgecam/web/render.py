"""The live picture: the latest frame with boxes, labels, scores, track ids and zones, as JPEG.

Encoding happens in a web client's thread and only when one asks: with nobody watching the
pipeline pays nothing. However many clients watch, at most ``fps`` frames per second (per
variant: with or without zones drawn) are encoded; clients asking faster get the cached JPEG.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from edgecam.core.annotate import draw_box, encode_jpeg, fit, label_colour, to_bgr
from edgecam.core.events import TrackView
from edgecam.core.tracking import iou_matrix
from edgecam.core.zones import Zone
from edgecam.types import Classification, Detections
from edgecam.web.state import LiveSlot, LiveView

U8 = npt.NDArray[np.uint8]
ZONE_COLOUR = (255, 200, 0)  # BGR: light blue outline
OCCUPIED_COLOUR = (0, 200, 255)  # BGR: amber fill when a confirmed object is inside
SAME_BOX_IOU = 0.9


@dataclass(frozen=True, slots=True)
class Encoded:
    seq: int
    jpeg: bytes
    timestamp: float  # capture time of the frame, epoch seconds


def short_id(track_id: str) -> str:
    """`3f2a9c1b7d10-17` -> `17`: the run prefix is the same for every track on screen."""
    return track_id.rsplit("-", 1)[-1]


def _caption(label: str, score: float, track: TrackView | None) -> str:
    text = f"{label} {score:.2f}"
    return f"{text} #{short_id(track.track_id)}" if track is not None and track.confirmed else text


def match_tracks(dets: Detections, tracks: Sequence[TrackView]) -> list[TrackView | None]:
    """The observed track each detection became (same label, near-identical box), if any."""
    seen = [t for t in tracks if t.observed]
    if not len(dets) or not seen:
        return [None] * len(dets)
    iou = iou_matrix(dets.xyxy, [t.xyxy for t in seen])
    out: list[TrackView | None] = []
    for i in range(len(dets)):
        j = int(iou[i].argmax())
        same = iou[i, j] >= SAME_BOX_IOU and seen[j].label == dets.label[i]
        out.append(seen[j] if same else None)
    return out


def draw_zones(image: U8, zones: Sequence[Zone], occupied: set[str]) -> None:
    """Outline every zone with its name; fill the occupied ones lightly (in place)."""
    h, w = image.shape[:2]
    thick = max(1, round(min(w, h) / 300))
    scale = max(0.4, min(w, h) / 900)
    for zone in zones:
        pts = np.array([[round(x * w), round(y * h)] for x, y in zone.points], np.int32)
        if zone.name in occupied:
            overlay = image.copy()
            cv2.fillPoly(overlay, [pts], OCCUPIED_COLOUR)
            cv2.addWeighted(overlay, 0.25, image, 0.75, 0, dst=image)
        cv2.polylines(image, [pts], True, ZONE_COLOUR, thick, cv2.LINE_AA)
        x, y = (int(v) for v in pts.min(axis=0))
        cv2.putText(
            image,
            zone.name,
            (x + 3, max(y + 3 + round(12 * scale), 12)),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            ZONE_COLOUR,
            thick,
            cv2.LINE_AA,
        )


def draw_classification(image: U8, output: Classification) -> None:
    h, w = image.shape[:2]
    scale = max(0.5, min(w, h) / 600)
    for i in range(min(3, len(output))):
        text = f"{output.label[i]} {float(output.score[i]):.2f}"
        y = round((i + 1) * 30 * scale)
        cv2.putText(image, text, (10, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 4)
        cv2.putText(image, text, (10, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1)


def render_live(
    view: LiveView, zones: Sequence[Zone], *, with_zones: bool, max_size: int, quality: int
) -> bytes | None:
    """JPEG of the view's frame with everything drawn; None when the result has no pixels."""
    frame = view.result.frame
    if frame is None:
        return None
    image = fit(to_bgr(frame), max_size)
    image = image.copy() if image is frame.pixels else image  # never draw on the pipeline's
    if with_zones and zones:
        occupied = {z for t in view.tracks if t.confirmed and t.observed for z in t.zones}
        draw_zones(image, zones, occupied)
    output = view.result.output
    if isinstance(output, Detections):
        for i, track in enumerate(match_tracks(output, view.tracks)):
            label, score = output.label[i], float(output.score[i])
            draw_box(image, output.xyxy[i], _caption(label, score, track), label_colour(label))
    else:
        draw_classification(image, output)
    return encode_jpeg(image, quality)


class FrameEncoder:
    """Shared, rate-limited encoder: one JPEG per (frame, variant), at most ``fps`` per second."""

    def __init__(
        self, slot: LiveSlot, zones: Sequence[Zone], *, fps: float, max_size: int, quality: int
    ) -> None:
        self.slot = slot
        self.zones = tuple(zones)
        self.interval = 1.0 / fps
        self.max_size = max_size
        self.quality = quality
        self.encoded = 0  # frames encoded so far (a metric)
        self.busy_s = 0.0  # CPU time drawing and encoding (in web client threads)
        self._cache: dict[bool, Encoded] = {}
        self._last = float("-inf")
        self._lock = threading.Lock()

    def frame(self, after_seq: int, *, with_zones: bool, timeout: float) -> Encoded | None:
        """A frame newer than ``after_seq`` (waiting up to ``timeout`` s), or None."""
        if self.slot.wait_newer(after_seq, timeout) is None:
            return None
        with self._lock:
            cached = self._cache.get(with_zones)
            latest = self.slot.latest()
            if cached is not None and cached.seq > after_seq:
                if latest is None or cached.seq == latest.seq:
                    return cached
                if time.monotonic() - self._last < self.interval:
                    return cached  # a newer frame exists, but the rate budget is spent
            wait = self.interval - (time.monotonic() - self._last)
            if wait > 0:
                time.sleep(min(wait, self.interval))
            view = self.slot.latest()
            if view is None:
                return None
            start = time.thread_time()
            jpeg = render_live(
                view,
                self.zones,
                with_zones=with_zones,
                max_size=self.max_size,
                quality=self.quality,
            )
            self.busy_s += time.thread_time() - start
            if jpeg is None:
                return None
            self._last = time.monotonic()
            self.encoded += 1
            encoded = Encoded(view.seq, jpeg, view.result.timestamp)
            self._cache[with_zones] = encoded
            return encoded
