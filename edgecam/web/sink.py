"""The pipeline's side of the page: a Sink on the output thread, and an events output.

Runs after the events sink in the same thread, so the tracker's view of the live tracks it
reads belongs to the very result it is handed. Per result it stores two references, bumps a
few metrics and, when a track's score improved, copies a small crop: no encoding, no I/O, no
waiting on any web client.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Protocol

from edgecam.core.events import TrackView
from edgecam.types import Result
from edgecam.web.metrics import WebMetrics
from edgecam.web.state import BestShots, EventLog, LiveSlot, LiveView


class TrackSource(Protocol):
    """The event engine's live-track view (edgecam.core.events.EventEngine.tracks)."""

    def tracks(self) -> tuple[TrackView, ...]: ...


class WebSink:
    """Sink + EventOutput: hands results, tracks and events to the page."""

    def __init__(
        self,
        slot: LiveSlot,
        events: EventLog,
        shots: BestShots,
        metrics: WebMetrics,
        tracker: TrackSource | None = None,
    ) -> None:
        self.slot = slot
        self.events = events
        self.shots = shots
        self.metrics = metrics
        self.tracker = tracker
        self.last_result: float | None = None  # time.monotonic() of the latest result
        self.busy_s = 0.0  # CPU time in handle() and publish_event(): the pipeline's cost

    def handle(self, result: Result) -> None:
        start = time.thread_time()
        now = time.monotonic()
        tracks = self.tracker.tracks() if self.tracker is not None else ()
        self.slot.publish(LiveView(result, tracks, now))
        self.last_result = now
        self.metrics.observe(result, now - result.monotonic)
        if self.tracker is not None:
            self.shots.observe(result.frame, tracks)
        self.busy_s += time.thread_time() - start

    def close(self, timeout: float = 0.0) -> None:
        """Nothing to flush: the page shows live state only."""

    # -- EventOutput (edgecam.sinks.events) ----------------------------------------------

    def publish_event(self, event: Mapping[str, Any]) -> None:
        start = time.thread_time()
        payload = self.events.add(event)
        self.metrics.event(payload)
        if payload.get("event") == "end":
            self.shots.ended(str(payload.get("track_id")))
        self.busy_s += time.thread_time() - start

    def publish_count(self, label: str, count: int) -> None:
        self.events.set_count(label, count)

    def publish_snapshot(self, label: str, jpeg: bytes) -> bool:
        """Not taken: the page keeps its own best shot per track (see BestShots)."""
        return False
