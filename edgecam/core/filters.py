"""Per-label detection filters and the track confirmation rule.

Two stages, as in Frigate: every *detection* must pass its label's geometric and score limits
before it reaches the tracker (so a tiny or wrongly shaped box never starts or feeds a track),
and a *track* only becomes real ("confirmed") once the median of its recent scores is high
enough. A single confident false positive therefore never produces an event: with
``confirm_frames >= 2`` at least two observations are needed (see :func:`window_median`).

Areas are fractions of the frame (0..1); aspect ratio is width / height in *pixels* (a
standing person is < 1 whatever the frame shape), which is why the frame size is passed in.

Duplicates: the model's NMS compares boxes by IoU, so a box lying mostly *inside* a larger box
of the same label survives it (an SSD seeing a person with a dog at their feet returns the
person and a "person" box stretched over both). Fed to a tracker, the pair spawns a second
track that can steal the object's id. Of two same-label boxes where ``duplicate_overlap`` of
the smaller one lies inside the other, only the higher-scoring one is kept.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edgecam.types import Detections

BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class LabelRule:
    """Limits for one label.

    min_score: per-detection score floor. min_area / max_area: box area as a fraction of the
    frame. min_ratio / max_ratio: box width / height in pixels. confirm_frames: how many recent
    observations the confirmation median looks at. confirm_score: the median a track needs.
    """

    min_score: float = 0.5
    min_area: float = 0.0
    max_area: float = 1.0
    min_ratio: float = 0.0
    max_ratio: float = math.inf
    confirm_frames: int = 5
    confirm_score: float = 0.6

    def __post_init__(self) -> None:
        checks = (
            (0.0 <= self.min_score <= 1.0, "min_score must be in [0, 1]"),
            (0.0 <= self.min_area <= self.max_area <= 1.0, "need 0 <= min_area <= max_area <= 1"),
            (0.0 <= self.min_ratio <= self.max_ratio, "need 0 <= min_ratio <= max_ratio"),
            (self.confirm_frames >= 1, "confirm_frames must be >= 1"),
            (0.0 <= self.confirm_score <= 1.0, "confirm_score must be in [0, 1]"),
        )
        for ok, message in checks:
            if not ok:
                raise ValueError(f"LabelRule: {message}, got {self}")


def duplicates(dets: Detections, candidates: BoolArray, overlap: float) -> BoolArray:
    """(N,) True for candidates overlapping a higher-scoring candidate of the same label by
    ``overlap`` of the smaller box's area (intersection over minimum, not IoU)."""
    out = np.zeros(len(dets), np.bool_)
    idx = np.flatnonzero(candidates)
    if len(idx) < 2:
        return out
    xyxy = dets.xyxy[idx].astype(np.float64)
    wh = np.maximum(
        np.minimum(xyxy[:, None, 2:], xyxy[None, :, 2:])
        - np.maximum(xyxy[:, None, :2], xyxy[None, :, :2]),
        0.0,
    )
    inter = wh[..., 0] * wh[..., 1]
    area = np.prod(xyxy[:, 2:] - xyxy[:, :2], axis=1)
    covered = inter >= overlap * np.minimum(area[:, None], area[None, :])
    labels = np.array([dets.label[i] for i in idx])
    score = dets.score[idx]
    better = (score[None, :] > score[:, None]) | (
        (score[None, :] == score[:, None])
        & (np.arange(len(idx))[None, :] < np.arange(len(idx))[:, None])
    )
    dup = covered & better & (labels[:, None] == labels[None, :])
    np.fill_diagonal(dup, False)
    out[idx] = dup.any(axis=1)
    return out


def window_median(scores: Sequence[float], frames: int) -> float:
    """Lower median of the last ``frames`` scores, padded with zeros up to ``frames``.

    The zero padding (Frigate pads to 3) means a young track cannot confirm on one lucky frame;
    the *lower* median keeps that true for even windows too: more than half of the window must
    reach the threshold, i.e. at least ``frames - (frames - 1) // 2`` observations.
    """
    window = sorted([*scores[-frames:], *([0.0] * max(frames - len(scores), 0))])
    return float(window[(frames - 1) // 2])


class ObjectFilter:
    """Which detections may become or feed tracks, and when a track is confirmed."""

    def __init__(
        self,
        default: LabelRule | None = None,
        per_label: Mapping[str, LabelRule] | None = None,
        *,
        allow: Iterable[str] = (),
        deny: Iterable[str] = (),
        duplicate_overlap: float = 0.8,
    ) -> None:
        """allow: only these labels (empty: all); deny: never these (wins over allow).

        duplicate_overlap: of two same-label boxes where this share of the smaller lies inside
        the other, keep only the higher-scoring (1.0: only when one fully contains the other).
        """
        if not 0.0 < duplicate_overlap <= 1.0:
            raise ValueError(f"duplicate_overlap must be in (0, 1], got {duplicate_overlap}")
        self.duplicate_overlap = duplicate_overlap
        self.default = default or LabelRule()
        self.per_label = dict(per_label or {})
        self.allow = frozenset(allow)
        self.deny = frozenset(deny)

    def rule(self, label: str) -> LabelRule:
        return self.per_label.get(label, self.default)

    def allowed(self, label: str) -> bool:
        return label not in self.deny and (not self.allow or label in self.allow)

    def mask(self, dets: Detections, width: int, height: int) -> BoolArray:
        """(N,) True where the detection passes its label's limits (width x height frame) and is
        not a duplicate of a better box."""
        keep = np.zeros(len(dets), np.bool_)
        if not len(dets):
            return keep
        xyxy = dets.xyxy.astype(np.float64)
        w = xyxy[:, 2] - xyxy[:, 0]
        h = xyxy[:, 3] - xyxy[:, 1]
        area = w * h
        ratio = np.divide(w * width, h * height, out=np.full_like(w, np.inf), where=h > 0)
        labels = np.array(dets.label)
        for label in set(dets.label):
            if not self.allowed(label):
                continue
            r = self.rule(label)
            rows = labels == label
            keep[rows] = (
                (w[rows] > 0)
                & (h[rows] > 0)
                & (dets.score[rows] >= r.min_score)
                & (area[rows] >= r.min_area)
                & (area[rows] <= r.max_area)
                & (ratio[rows] >= r.min_ratio)
                & (ratio[rows] <= r.max_ratio)
            )
        return keep & ~duplicates(dets, keep, self.duplicate_overlap)

    def apply(self, dets: Detections, width: int, height: int) -> Detections:
        return dets[self.mask(dets, width, height)]

    def confirmed(self, label: str, scores: Sequence[float]) -> bool:
        """Frigate-style rule: median of the recent observed scores >= confirm_score."""
        r = self.rule(label)
        return window_median(scores, r.confirm_frames) >= r.confirm_score
