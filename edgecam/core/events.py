"""Tracked objects → lifecycle events (``new`` / ``update`` / ``end``) and per-label counts.

Pure: one :meth:`EventEngine.update` per processed frame (detections, the frame time and seq
come in the :class:`~edgecam.types.Result`), events out. ``new`` is sent when a track is
*confirmed* (see edgecam.core.filters), so one-frame false positives never produce events; every
``new`` is followed by exactly one ``end`` (track gone after ``max_disappeared`` frames, or
:meth:`EventEngine.flush` at shutdown). ``update`` only when something a subscriber cares about
changed: a zone entered or left, or the best score rose by ``score_margin``.

For snapshots the engine keeps, per live track, one private copy of the frame where the track
scored best (copied only when the score improves, one copy shared by all tracks improving in
the same frame; memory is bounded by the number of live tracks, and ``keep_frames=False``
keeps none); the event carries it in ``Event.best.frame`` (see edgecam.core.annotate), so a caller
can render the snapshot of an ``end`` after the engine has forgotten the track.

Wire format — :func:`events_to_dict` (the ``events`` topic and JSON-lines sink)::

    schema       int    payload schema version (edgecam.core.payload.SCHEMA_VERSION)
    type         str    always "event" (message kind, as "detections" for frame messages)
    event        str    "new" | "update" | "end"
    event_id     str    unique per message, "<track_id>:<n>" (n = 0 for new): dedupes QoS 1
    device_id    str    run_id str    model str
    seq          int|null  message counter of the publishing stream (set by the caller)
    frame_seq    int    source frame that produced the event (end: the frame where the object
                        was judged gone, or the last frame processed before shutdown)
    track_id     str    the object; shared by its new/update/end messages, unique per run
    label        str    class_id int
    score        float  score of the latest observation (4 decimals)
    best_score   float  highest observed score so far
    first_seen   float  epoch seconds (ms precision) of the first observation
    first_seen_at str   same as ISO-8601 UTC ("2024-05-01T14:02:11.250Z")
    last_seen    float  / last_seen_at str: the latest observation
    duration_s   float  last_seen - first_seen
    frame        {width: int, height: int} source frame size the boxes refer to
    box          {xmin, ymin, xmax, ymax: float} latest observed box, normalized 0..1
    box_px       {xmin, ymin, xmax, ymax: int} same in pixels, clipped to the frame
    zones        [str]  zones the object is in now
    entered      [str]  zones entered with this message (new: = zones)
    left         [str]  zones left with this message
    reasons      [str]  new: ["confirmed"]; update: any of "entered_zone", "left_zone",
                        "better_score"; end: ["gone"] or ["shutdown"]
    best         {frame_seq: int, time: float, time_at: str, score: float, box, box_px}
                 the observation the snapshot is rendered from
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from edgecam.core.filters import ObjectFilter
from edgecam.core.payload import SCHEMA_VERSION, iso_utc
from edgecam.core.tracking import Box, Track, Tracker
from edgecam.core.zones import Zone, ZonePresence, Zones
from edgecam.errors import ConfigError
from edgecam.types import Detections, Frame, Result

EventType = Literal["new", "update", "end"]
Reason = Literal["confirmed", "entered_zone", "left_zone", "better_score", "gone", "shutdown"]


@dataclass(frozen=True, slots=True)
class BestShot:
    """The best observation of a track. frame: private pixel copy, None if none was given."""

    seq: int
    timestamp: float
    score: float
    xyxy: Box
    frame: Frame | None


@dataclass(frozen=True, slots=True)
class Event:
    """One lifecycle message; :func:`events_to_dict` is its wire form (fields documented there)."""

    event_id: str
    type: EventType
    reasons: tuple[Reason, ...]
    seq: int
    track_id: str
    label: str
    class_id: int
    score: float
    best_score: float
    first_seen: float
    last_seen: float
    xyxy: Box
    frame_size: tuple[int, int]
    zones: tuple[str, ...]
    entered: tuple[str, ...]
    left: tuple[str, ...]
    best: BestShot

    @property
    def duration(self) -> float:
        return self.last_seen - self.first_seen


@dataclass(frozen=True, slots=True)
class TrackView:
    """A live track as the engine sees it after the latest update (for live displays).

    confirmed: it has had its ``new`` event (tentative tracks may still be false positives);
    observed: detected in the latest frame (else it is coasting and xyxy is where it was last
    seen); zones: the zones it is in, after inertia.
    """

    track_id: str
    label: str
    score: float
    best_score: float
    xyxy: Box
    zones: tuple[str, ...]
    confirmed: bool
    observed: bool


@dataclass(frozen=True, slots=True)
class EngineStep:
    """Events of one update, and the per-label counts that *changed* (publish these retained)."""

    events: tuple[Event, ...]
    counts: Mapping[str, int]


class _Open:
    """Engine-side state of one live track."""

    __slots__ = (
        "best",
        "confirmed",
        "frame_size",
        "last_seq",
        "n_events",
        "presence",
        "reported",
        "scores",
        "track",
    )

    def __init__(self, track: Track, presence: ZonePresence, window: int) -> None:
        self.track = track
        self.presence = presence
        self.scores: collections.deque[float] = collections.deque(maxlen=window)
        self.confirmed = False
        self.best: BestShot | None = None
        self.reported = 0.0  # best score as last published
        self.n_events = 0
        self.frame_size = (0, 0)
        self.last_seq = -1  # frame seq of the latest observation


class _LazyCopy:
    """Copies the frame's pixels at most once per update, only if some track needs them."""

    def __init__(self, frame: Frame | None) -> None:
        self._frame = frame
        self._copy: Frame | None = None

    def get(self) -> Frame | None:
        if self._frame is not None and self._copy is None:
            self._copy = replace(self._frame, pixels=self._frame.pixels.copy())
        return self._copy


class EventEngine:
    """Filters → tracker → zones → events; the object a pipeline keeps for its whole run."""

    def __init__(
        self,
        tracker: Tracker | None = None,
        filters: ObjectFilter | None = None,
        zones: Iterable[Zone] = (),
        *,
        score_margin: float = 0.05,
        keep_frames: bool = True,
    ) -> None:
        """score_margin: best-score rise that is worth an ``update``; keep_frames: False if the
        caller renders no snapshots (saves the pixel copies)."""
        if not 0.0 <= score_margin <= 1.0:
            raise ValueError(f"score_margin must be in [0, 1], got {score_margin}")
        self.tracker = tracker if tracker is not None else Tracker()
        self.filters = filters if filters is not None else ObjectFilter()
        self.zones = Zones(zones)
        self.score_margin = score_margin
        self.keep_frames = keep_frames
        self._open: dict[str, _Open] = {}
        self._counts: dict[str, int] = {}
        self._last_seq = 0

    @property
    def counts(self) -> dict[str, int]:
        """Confirmed, not yet ended objects per label (0 for labels seen earlier in the run)."""
        return dict(self._counts)

    def tracks(self) -> tuple[TrackView, ...]:
        """Every live track after the latest update, tentative ones included."""
        return tuple(
            TrackView(
                track_id=st.track.track_id,
                label=st.track.label,
                score=st.track.score,
                best_score=st.best.score if st.best is not None else st.track.score,
                xyxy=st.track.xyxy,
                zones=st.presence.current,
                confirmed=st.confirmed,
                observed=st.last_seq == self._last_seq,
            )
            for st in self._open.values()
        )

    def update(
        self, result: Result, frame: Frame | None = None, frames_skipped: int = 0
    ) -> EngineStep:
        """Process one frame's detections; ``frame`` (same seq) supplies snapshot pixels."""
        if not isinstance(result.output, Detections):
            raise ConfigError(
                f"events need a detection model, got classification output from {result.model!r}"
            )
        if frame is not None and frame.seq != result.seq:
            raise ValueError(f"frame seq {frame.seq} does not match result seq {result.seq}")
        size = (result.width, result.height)
        kept = self.filters.apply(result.output, *size)
        step = self.tracker.update(kept, result.timestamp, frames_skipped)
        self._last_seq = result.seq
        observed = [t for t in step.tracks if t.observed]
        inside = self.zones.contains([t.xyxy for t in observed], [t.label for t in observed])
        pixels = _LazyCopy(frame if self.keep_frames else None)
        events: list[Event] = []
        for track, row in zip(observed, inside, strict=True):
            st = self._open.get(track.track_id)
            if st is None:
                window = self.filters.rule(track.label).confirm_frames
                st = self._open[track.track_id] = _Open(track, self.zones.presence(), window)
            st.frame_size = size
            event = self._observe(st, track, [bool(v) for v in row], result, pixels)
            if event is not None:
                events.append(event)
        for track in step.removed:
            gone = self._open.pop(track.track_id, None)
            if gone is not None and gone.confirmed:
                events.append(self._event(gone, "end", ("gone",)))
        return EngineStep(tuple(events), self._count_changes())

    def flush(self) -> EngineStep:
        """Shutdown: ``end`` every confirmed open track and start afresh (ids keep counting)."""
        events = [
            self._event(st, "end", ("shutdown",)) for st in self._open.values() if st.confirmed
        ]
        self._open.clear()
        self.tracker.reset()
        return EngineStep(tuple(events), self._count_changes())

    def _observe(
        self,
        st: _Open,
        track: Track,
        inside: list[bool],
        result: Result,
        pixels: _LazyCopy,
    ) -> Event | None:
        st.track = track
        st.last_seq = result.seq
        st.scores.append(track.score)
        if st.best is None or track.score > st.best.score:
            st.best = BestShot(result.seq, result.timestamp, track.score, track.xyxy, pixels.get())
        entered, left = st.presence.update(inside)
        if not st.confirmed:
            if not self.filters.confirmed(track.label, list(st.scores)):
                return None
            st.confirmed = True
            st.reported = st.best.score
            return self._event(st, "new", ("confirmed",), entered=st.presence.current)
        reasons: list[Reason] = []
        if entered:
            reasons.append("entered_zone")
        if left:
            reasons.append("left_zone")
        rise = st.best.score - st.reported
        if rise > 0 and rise >= self.score_margin:
            reasons.append("better_score")
            st.reported = st.best.score
        if not reasons:
            return None
        return self._event(st, "update", tuple(reasons), entered=entered, left=left)

    def _event(
        self,
        st: _Open,
        kind: EventType,
        reasons: tuple[Reason, ...],
        *,
        entered: tuple[str, ...] = (),
        left: tuple[str, ...] = (),
    ) -> Event:
        t = st.track
        assert st.best is not None  # set on the first observation, before any event
        event = Event(
            event_id=f"{t.track_id}:{st.n_events}",
            type=kind,
            reasons=reasons,
            seq=self._last_seq,
            track_id=t.track_id,
            label=t.label,
            class_id=t.class_id,
            score=t.score,
            best_score=st.best.score,
            first_seen=t.first_seen,
            last_seen=t.last_seen,
            xyxy=t.xyxy,
            frame_size=st.frame_size,
            zones=st.presence.current,
            entered=entered,
            left=left,
            best=st.best,
        )
        st.n_events += 1
        return event

    def _count_changes(self) -> dict[str, int]:
        now = collections.Counter(st.track.label for st in self._open.values() if st.confirmed)
        changed = {
            label: now.get(label, 0)
            for label in sorted(set(now) | set(self._counts))
            if now.get(label, 0) != self._counts.get(label)
        }
        self._counts.update(changed)
        return changed


def _box_dict(xyxy: Box, digits: int = 4) -> dict[str, float]:
    return dict(
        zip(("xmin", "ymin", "xmax", "ymax"), (round(v, digits) for v in xyxy), strict=True)
    )


def _box_px(xyxy: Box, size: tuple[int, int]) -> dict[str, int]:
    w, h = size
    limits = (w, h, w, h)
    scaled = [min(max(round(v * lim), 0), lim) for v, lim in zip(xyxy, limits, strict=True)]
    return dict(zip(("xmin", "ymin", "xmax", "ymax"), scaled, strict=True))


def events_to_dict(
    event: Event, device_id: str, *, run_id: str = "", model: str = "", seq: int | None = None
) -> dict[str, Any]:
    """The documented JSON-ready form of ``event`` (see the module docstring)."""
    width, height = event.frame_size
    best = event.best
    return {
        "schema": SCHEMA_VERSION,
        "type": "event",
        "event": event.type,
        "event_id": event.event_id,
        "device_id": device_id,
        "run_id": run_id,
        "model": model,
        "seq": seq,
        "frame_seq": event.seq,
        "track_id": event.track_id,
        "label": event.label,
        "class_id": event.class_id,
        "score": round(event.score, 4),
        "best_score": round(event.best_score, 4),
        "first_seen": round(event.first_seen, 3),
        "first_seen_at": iso_utc(event.first_seen),
        "last_seen": round(event.last_seen, 3),
        "last_seen_at": iso_utc(event.last_seen),
        "duration_s": round(event.duration, 3),
        "frame": {"width": width, "height": height},
        "box": _box_dict(event.xyxy),
        "box_px": _box_px(event.xyxy, event.frame_size),
        "zones": list(event.zones),
        "entered": list(event.entered),
        "left": list(event.left),
        "reasons": list(event.reasons),
        "best": {
            "frame_seq": best.seq,
            "time": round(best.timestamp, 3),
            "time_at": iso_utc(best.timestamp),
            "score": round(best.score, 4),
            "box": _box_dict(best.xyxy),
            "box_px": _box_px(best.xyxy, event.frame_size),
        },
    }
