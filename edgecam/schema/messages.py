"""The typed messages of the MQTT contract: frozen dataclasses built by edgecam.schema's parsers.

Standard library only, like the parser, so subscribers need nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

EventType = Literal["new", "update", "end"]


@dataclass(frozen=True, slots=True)
class Box:
    """Normalized [0, 1] corners relative to the frame."""

    xmin: float
    ymin: float
    xmax: float
    ymax: float


@dataclass(frozen=True, slots=True)
class PixelBox:
    """The same box in source-frame pixels."""

    xmin: int
    ymin: int
    xmax: int
    ymax: int


@dataclass(frozen=True, slots=True)
class Detection:
    label: str
    class_id: int
    score: float
    box: Box
    box_px: PixelBox


@dataclass(frozen=True, slots=True)
class ClassScore:
    label: str
    class_id: int
    score: float


@dataclass(frozen=True, slots=True)
class _Frame:
    """Fields shared by detections and classification messages."""

    schema: int
    device_id: str
    run_id: str
    seq: int
    frame_seq: int
    model: str
    source: str
    captured_at: datetime
    captured_ms: int
    width: int
    height: int
    inference_ms: float
    end_to_end_ms: float | None
    timings_ms: Mapping[str, float]


@dataclass(frozen=True, slots=True)
class DetectionsMessage(_Frame):
    detections: tuple[Detection, ...]


@dataclass(frozen=True, slots=True)
class ClassificationMessage(_Frame):
    classification: tuple[ClassScore, ...]


@dataclass(frozen=True, slots=True)
class BestObservation:
    """The observation an event's snapshot is rendered from."""

    frame_seq: int
    time: float
    time_at: datetime
    score: float
    box: Box
    box_px: PixelBox


@dataclass(frozen=True, slots=True)
class EventMessage:
    """A tracked object's lifecycle step: `new` once confirmed, `update`s, then one `end`.

    `event_id` is unique per message (drop QoS 1 duplicates by it); `track_id` is shared by
    all messages of one object. Times are epoch seconds plus the same as ISO-8601 (`*_at`).
    """

    schema: int
    device_id: str
    run_id: str
    seq: int
    model: str
    event: EventType
    event_id: str
    frame_seq: int
    track_id: str
    label: str
    class_id: int
    score: float
    best_score: float
    first_seen: float
    first_seen_at: datetime
    last_seen: float
    last_seen_at: datetime
    duration_s: float
    width: int
    height: int
    box: Box
    box_px: PixelBox
    zones: tuple[str, ...]
    entered: tuple[str, ...]
    left: tuple[str, ...]
    reasons: tuple[str, ...]
    best: BestObservation


@dataclass(frozen=True, slots=True)
class PublisherStats:
    state: str
    outbox_depth: int
    outbox_bytes: int
    messages_dropped: int
    messages_dropped_total: int
    messages_rejected: int
    published: int
    acked: int
    reconnects: int
    # Newer publishers only (absent: an older edgecam, which had no memory fallback).
    memory_depth: int = 0
    health: str = "ok"  # ok, degraded, failed
    problem: str | None = None
    broker: str | None = None  # the node in use, mqtt[s]://host:port (a cluster has several)
    protocol: str | None = None  # "5" or "3.1.1"


@dataclass(frozen=True, slots=True)
class ExecutionTrial:
    """One arrangement measured by adaptive execution (e.g. "sequential/2" at 41.3 fps)."""

    arrangement: str
    fps: float
    latency_ms: float


@dataclass(frozen=True, slots=True)
class Execution:
    """How the producer arranges its stages (`pipeline.execution`); see stats.schema.json.

    threads: interpreter threads, None when the producer cannot change them. chosen_by:
    config, cache, calibration, calibrating, pending or default (newer producers may add).
    """

    mode: str
    threads: int | None
    chosen_by: str
    running: str | None
    trials: tuple[ExecutionTrial, ...]
    rechecks: int


@dataclass(frozen=True, slots=True)
class StatsMessage:
    """`pipeline` is whatever the producer's pipeline reports (fps_in, fps_out, inference_ms...);
    `execution` its typed `pipeline.execution` (None from producers that do not send it)."""

    schema: int
    device_id: str
    run_id: str
    model: str
    published_at: datetime
    published_ms: int
    uptime_s: float
    cpu_percent: float
    rss_mb: float
    pipeline: Mapping[str, Any]
    mqtt: PublisherStats
    execution: Execution | None = None


@dataclass(frozen=True, slots=True)
class StatusMessage:
    device_id: str
    online: bool


@dataclass(frozen=True, slots=True)
class CountMessage:
    device_id: str
    label: str
    count: int


@dataclass(frozen=True, slots=True)
class SnapshotMessage:
    device_id: str
    label: str
    jpeg: bytes


Message = (
    DetectionsMessage
    | ClassificationMessage
    | EventMessage
    | StatsMessage
    | StatusMessage
    | CountMessage
    | SnapshotMessage
)


@dataclass(frozen=True, slots=True)
class Topic:
    """`<prefix>/<device_id>/<kind>[/<label>]`; the prefix may itself contain '/'."""

    prefix: str
    device_id: str
    kind: str
    label: str | None = None
