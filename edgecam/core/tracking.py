"""Multi-object tracker: greedy per-label (buffered) IoU association, constant-velocity prediction.

Pure state machine, one ``update()`` per processed frame: numpy in, frozen dataclasses out, no
clock (the caller passes the frame time) and no globals (the id counter belongs to the
instance, so two cameras in one process never share or collide ids).

Why greedy IoU and not Hungarian/Kalman: with a fixed camera and the ≲ 10–20 objects a Pi
sees, the highest-IoU-first assignment almost always equals the optimal one, costs well under
a millisecond per frame without pulling in scipy, and is easy to reason about. A light
alpha-beta style velocity estimate (centre and size) bridges missed detections and dropped
frames; a second pass with enlarged boxes (C-BIoU) links objects that moved more than their
own width between two processed frames (a walker seen at 5 fps) before any velocity is known.

Units: boxes are normalized ``[xmin, ymin, xmax, ymax]`` (fractions of the frame); "frames"
are *source* frames, so ``frames_skipped`` (frames the pipeline dropped before this one)
advances predictions and counts toward ``max_disappeared`` like norfair's ``period``. A track
that matches again after a long skip keeps its id: a skipped frame is no evidence of absence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edgecam.types import Detections

Box = tuple[float, float, float, float]
FloatArray = npt.NDArray[np.float64]

_MIN_SIZE = 1e-4  # predicted boxes never collapse to zero width/height
_SIZE_HORIZON = 2.0  # frames over which a size change is extrapolated (see Tracker._predict)


def iou_matrix(a: npt.ArrayLike, b: npt.ArrayLike) -> FloatArray:
    """IoU of every box in ``a`` (N, 4) with every box in ``b`` (M, 4), xyxy → (N, M)."""
    aa = np.asarray(a, np.float64).reshape(-1, 4)
    bb = np.asarray(b, np.float64).reshape(-1, 4)
    wh = np.maximum(
        np.minimum(aa[:, None, 2:], bb[None, :, 2:]) - np.maximum(aa[:, None, :2], bb[None, :, :2]),
        0.0,
    )
    inter = wh[..., 0] * wh[..., 1]
    size_a = np.maximum(aa[:, 2:] - aa[:, :2], 0.0)
    size_b = np.maximum(bb[:, 2:] - bb[:, :2], 0.0)
    union = (size_a[:, 0] * size_a[:, 1])[:, None] + (size_b[:, 0] * size_b[:, 1])[None, :] - inter
    out: FloatArray = np.zeros_like(inter)
    np.divide(inter, union, out=out, where=union > 0)
    return out


def _grow(xyxy: npt.ArrayLike, buffer: float) -> FloatArray:
    """Boxes grown by ``buffer`` times their width/height on every side."""
    boxes = np.asarray(xyxy, np.float64).reshape(-1, 4)
    if buffer == 0.0:
        return boxes
    pad = np.tile(boxes[:, 2:] - boxes[:, :2], 2) * buffer
    out: FloatArray = boxes + pad * np.array([-1.0, -1.0, 1.0, 1.0])
    return out


def _greedy(score: FloatArray, threshold: float) -> list[tuple[int, int]]:
    """Row/column pairs, highest score first, each row and column used once, score >= threshold.

    Ties keep row order (older tracks first), so results do not depend on sort internals.
    """
    cand_r, cand_c = np.nonzero(score >= threshold)
    order = np.argsort(-score[cand_r, cand_c], kind="stable")
    used_r: set[int] = set()
    used_c: set[int] = set()
    pairs: list[tuple[int, int]] = []
    for k in order.tolist():
        r, c = int(cand_r[k]), int(cand_c[k])
        if r not in used_r and c not in used_c:
            used_r.add(r)
            used_c.add(c)
            pairs.append((r, c))
    return pairs


def _to_cxcywh(xyxy: FloatArray) -> FloatArray:
    out: FloatArray = np.concatenate(
        [(xyxy[..., :2] + xyxy[..., 2:]) / 2, xyxy[..., 2:] - xyxy[..., :2]], axis=-1
    )
    return out


def _to_xyxy(cxcywh: FloatArray) -> FloatArray:
    half = np.maximum(cxcywh[..., 2:], _MIN_SIZE) / 2
    out: FloatArray = np.concatenate([cxcywh[..., :2] - half, cxcywh[..., :2] + half], axis=-1)
    return out


@dataclass(frozen=True, slots=True)
class Track:
    """One tracked object as of the latest update.

    xyxy: last *observed* box (normalized); predicted: where the tracker expects it now.
    score: score of the last observation. detection: row of this update's Detections that
    matched, or -1 when the track is coasting. missed: source frames since the last
    observation (0 when observed). first_seen / last_seen: frame times of the first and
    latest observation, in the caller's time unit (epoch seconds in edgecam).
    """

    track_id: str
    label: str
    class_id: int
    xyxy: Box
    predicted: Box
    score: float
    detection: int
    hits: int
    missed: int
    first_seen: float
    last_seen: float

    @property
    def observed(self) -> bool:
        return self.detection >= 0


@dataclass(frozen=True, slots=True)
class TrackerUpdate:
    """What one update produced: live tracks (oldest first) and tracks dropped just now."""

    tracks: tuple[Track, ...]
    removed: tuple[Track, ...]


class _Frame:
    """One update's detections as plain Python lists: per-track maths on 4 floats is several
    times faster in Python than on tiny numpy arrays."""

    __slots__ = ("cxcywh", "labels", "scores", "xyxy")

    def __init__(self, dets: Detections) -> None:
        xyxy = np.asarray(dets.xyxy, np.float64)
        self.xyxy: list[list[float]] = xyxy.tolist()
        self.cxcywh: list[list[float]] = _to_cxcywh(xyxy).tolist()
        self.scores: list[float] = dets.score.tolist()
        self.labels = dets.label


class _State:
    """Mutable per-track state; never leaves the tracker (snapshots are :class:`Track`)."""

    __slots__ = (
        "box",
        "class_id",
        "first_seen",
        "hits",
        "label",
        "last_frame",
        "last_seen",
        "score",
        "track_id",
        "vel",
        "xyxy",
    )

    def __init__(self, track_id: str, label: str, class_id: int, now: float) -> None:
        self.track_id = track_id
        self.label = label
        self.class_id = class_id
        self.box = [0.0] * 4  # last observation, cx cy w h
        self.vel = [0.0] * 4  # per source frame
        self.xyxy: Box = (0.0, 0.0, 0.0, 0.0)  # last observation as the detector gave it
        self.hits = 0
        self.last_frame = 0
        self.score = 0.0
        self.first_seen = now
        self.last_seen = now


class Tracker:
    """Per-label greedy IoU tracker; see the module docstring for the model."""

    def __init__(
        self,
        *,
        iou_threshold: float = 0.3,
        max_disappeared: int = 30,
        velocity_smoothing: float = 0.5,
        match_buffer: float = 0.5,
        id_prefix: str = "",
    ) -> None:
        """id_prefix: run-unique text so ids never repeat across restarts (ids: ``PREFIX-N``).

        velocity_smoothing: weight of the newest displacement in the velocity estimate
        (1 = last step only, jittery; small = slow to follow turns). match_buffer: how much
        (times width/height, each side) boxes grow for the second matching pass; 0 disables it.
        """
        if not 0.0 < iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
        if max_disappeared < 0:
            raise ValueError(f"max_disappeared must be >= 0 frames, got {max_disappeared}")
        if not 0.0 < velocity_smoothing <= 1.0:
            raise ValueError(f"velocity_smoothing must be in (0, 1], got {velocity_smoothing}")
        if not 0.0 <= match_buffer <= 5.0:
            raise ValueError(f"match_buffer must be in [0, 5], got {match_buffer}")
        self.iou_threshold = iou_threshold
        self.max_disappeared = max_disappeared
        self.velocity_smoothing = velocity_smoothing
        self.match_buffer = match_buffer
        self.id_prefix = id_prefix
        self._next_id = 1
        self._frame = 0
        self._states: list[_State] = []

    def __len__(self) -> int:
        return len(self._states)

    def reset(self) -> None:
        """Drop every track (after a flush); the id counter keeps counting so ids stay unique."""
        self._states = []

    def update(
        self, detections: Detections | None, now: float, frames_skipped: int = 0
    ) -> TrackerUpdate:
        """Advance by ``frames_skipped + 1`` source frames and associate ``detections``.

        ``None`` means "no detector output for this frame" (same as no detections).
        """
        if frames_skipped < 0:
            raise ValueError(f"frames_skipped must be >= 0, got {frames_skipped}")
        dets = detections if detections is not None else Detections.empty()
        obs = _Frame(dets)
        self._frame += frames_skipped + 1
        predicted = self._predict()
        det_of = [-1] * len(self._states)
        for t, d in self._associate(predicted, dets):
            det_of[t] = d
            self._observe(self._states[t], obs, d, now)
        taken = set(det_of)
        for d in range(len(dets)):
            if d not in taken:
                self._spawn(obs, d, int(dets.class_id[d]), now)
                det_of.append(d)
        pred_boxes: list[Box] = [(a, b, c, d) for a, b, c, d in predicted.tolist()]
        keep: list[_State] = []
        tracks: list[Track] = []
        removed: list[Track] = []
        for i, st in enumerate(self._states):
            pred = st.xyxy if i >= len(pred_boxes) else pred_boxes[i]
            snap = self._snapshot(st, det_of[i], pred)
            if snap.missed > self.max_disappeared:
                removed.append(snap)
            else:
                keep.append(st)
                tracks.append(snap)
        self._states = keep
        return TrackerUpdate(tuple(tracks), tuple(removed))

    def _predict(self) -> FloatArray:
        """Predicted xyxy of every existing track at the current frame, (T, 4).

        The centre moves with its velocity for the whole gap; the size for at most
        ``_SIZE_HORIZON`` frames: partial occlusion shrinks a box abruptly, and extrapolating
        that shrink through a long miss collapses the prediction (a cat behind a passer-by).
        """
        if not self._states:
            return np.zeros((0, 4))
        boxes = np.array([st.box for st in self._states], np.float64)
        vels = np.array([st.vel for st in self._states], np.float64)
        dt = np.array([self._frame - st.last_frame for st in self._states], np.float64)
        steps = np.stack([dt, dt, np.minimum(dt, _SIZE_HORIZON), np.minimum(dt, _SIZE_HORIZON)], 1)
        return _to_xyxy(boxes + vels * steps)

    def _associate(self, predicted: FloatArray, dets: Detections) -> list[tuple[int, int]]:
        """Cascaded buffered IoU: plain IoU first, then boxes grown by ``match_buffer``.

        The second pass (C-BIoU, Yang et al. 2023) catches objects that moved further than
        their own width since the last look: a new track (no velocity yet) at a low frame
        rate, or a sudden turn. Pairs are always of the same label.
        """
        if not self._states or not len(dets):
            return []
        track_labels = np.array([st.label for st in self._states])
        allowed = track_labels[:, None] == np.array(dets.label)[None, :]
        pairs = _greedy(
            np.where(allowed, iou_matrix(predicted, dets.xyxy), 0.0), self.iou_threshold
        )
        if self.match_buffer > 0 and len(pairs) < min(allowed.shape):
            for t, d in pairs:
                allowed[t, :] = False
                allowed[:, d] = False
            if allowed.any():
                grown = iou_matrix(
                    _grow(predicted, self.match_buffer), _grow(dets.xyxy, self.match_buffer)
                )
                pairs += _greedy(np.where(allowed, grown, 0.0), self.iou_threshold)
        return pairs

    def _observe(self, st: _State, obs: _Frame, d: int, now: float) -> None:
        box = obs.cxcywh[d]
        if st.hits:
            dt = max(self._frame - st.last_frame, 1)
            beta = 1.0 if st.hits == 1 else self.velocity_smoothing
            st.vel = [
                (1.0 - beta) * v + beta * (b - o) / dt
                for v, b, o in zip(st.vel, box, st.box, strict=True)
            ]
        st.box = box
        x0, y0, x1, y1 = obs.xyxy[d]
        st.xyxy = (x0, y0, x1, y1)
        st.hits += 1
        st.last_frame = self._frame
        st.score = obs.scores[d]
        st.last_seen = now

    def _spawn(self, obs: _Frame, d: int, class_id: int, now: float) -> None:
        number = self._next_id
        self._next_id += 1
        track_id = f"{self.id_prefix}-{number}" if self.id_prefix else str(number)
        st = _State(track_id, obs.labels[d], class_id, now)
        self._states.append(st)
        self._observe(st, obs, d, now)

    def _snapshot(self, st: _State, det: int, predicted: Box) -> Track:
        return Track(
            track_id=st.track_id,
            label=st.label,
            class_id=st.class_id,
            xyxy=st.xyxy,
            predicted=predicted,
            score=st.score,
            detection=det,
            hits=st.hits,
            missed=self._frame - st.last_frame,
            first_seen=st.first_seen,
            last_seen=st.last_seen,
        )
