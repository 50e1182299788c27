"""Results -> tracked-object events, counts and snapshots, handed to the outputs that take them.

A Sink like the others, so the pipeline's output thread drives it; the tracking itself is the
pure EventEngine (edgecam.core.events). Close it before the outputs it feeds: it flushes an `end`
for every open track.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from typing import Any, Protocol

from edgecam.config.events import EventsSection
from edgecam.config.objects import ObjectsSection
from edgecam.config.tracking import TrackingSection
from edgecam.config.zones import ZoneSection
from edgecam.core.annotate import SnapshotOptions, event_snapshot, snapshot_filename
from edgecam.core.events import EngineStep, Event, EventEngine, events_to_dict
from edgecam.core.tracking import Tracker
from edgecam.errors import ConfigError
from edgecam.sinks.snapshots import SnapshotStore
from edgecam.types import Result

log = logging.getLogger(__name__)


class EventOutput(Protocol):
    """What MqttSink and JsonlSink offer for events."""

    def publish_event(self, event: dict[str, Any]) -> None: ...

    def publish_count(self, label: str, count: int) -> None: ...

    def publish_snapshot(self, label: str, jpeg: bytes) -> bool: ...


class Switches(Protocol):
    """Run-time switches (edgecam.sinks.mqtt_commands.Controls): detection, snapshots."""

    def detect_for_frame(self) -> bool:
        """Detection on? Asked once per frame by the sink that acts on the answer."""
        ...

    @property
    def snapshots(self) -> bool: ...


class EventsSink:
    """Feeds each result to the EventEngine and publishes what it produces."""

    def __init__(
        self,
        engine: EventEngine,
        outputs: Sequence[EventOutput],
        *,
        device_id: str,
        run_id: str,
        model: str,
        snapshots: SnapshotOptions | None = None,
        store: SnapshotStore | None = None,
        switches: Switches | None = None,
    ) -> None:
        self.engine = engine
        self.outputs = tuple(outputs)
        self.device_id = device_id
        self.run_id = run_id
        self.model = model
        self.snapshots = snapshots
        self.store = store
        self._last_seq: int | None = None
        self.events_published = 0
        self.switches = switches
        self._paused = False

    def add_output(self, output: EventOutput) -> None:
        """One more receiver of events and counts (the web page joins after the sinks exist)."""
        self.outputs = (*self.outputs, output)

    def handle(self, result: Result) -> None:
        if self.switches is not None and not self.switches.detect_for_frame():
            # Detection switched off: end the open tracks once (as a shutdown does), then
            # ignore the odd frame inferred for a snapshot until detection is back on.
            if not self._paused:
                self._paused = True
                self._last_seq = None
                self._publish(self.engine.flush())
            return
        self._paused = False
        # Frames the pipeline dropped (live sources) show as gaps in the source's seq; the
        # tracker advances its predictions over them instead of seeing a jump.
        skipped = 0 if self._last_seq is None else max(0, result.seq - self._last_seq - 1)
        self._last_seq = result.seq
        self._publish(self.engine.update(result, result.frame, skipped))

    def close(self, timeout: float = 0.0) -> None:
        self._publish(self.engine.flush())

    def _publish(self, step: EngineStep) -> None:
        for event in step.events:
            payload = events_to_dict(
                event, self.device_id, run_id=self.run_id, model=self.model, seq=0
            )
            for output in self.outputs:
                output.publish_event(payload)
            self.events_published += 1
            if event.type in ("new", "end"):
                self._snapshot(event)
        for label, count in step.counts.items():
            for output in self.outputs:
                output.publish_count(label, count)

    def _snapshot(self, event: Event) -> None:
        if self.snapshots is None or (self.switches is not None and not self.switches.snapshots):
            return
        jpeg = event_snapshot(event, self.snapshots)
        if jpeg is None:
            return
        for output in self.outputs:
            output.publish_snapshot(event.label, jpeg)
        if self.store is not None:
            self.store.save(snapshot_filename(event), jpeg)


def check_config_labels(
    objects: ObjectsSection, zones: Sequence[ZoneSection], known: Collection[str]
) -> None:
    """Fail on labels the model does not have (a typo would silently filter nothing)."""
    used = {*objects.allow, *objects.deny, *objects.filters}
    for zone in zones:
        used.update(zone.labels)
    unknown = sorted(used - set(known))
    if unknown:
        raise ConfigError(
            f"objects/zones: unknown label(s) {', '.join(unknown)}",
            "use label names from the model's labels file",
        )


def build_event_engine(
    tracking: TrackingSection,
    objects: ObjectsSection,
    zones: Sequence[ZoneSection] = (),
    events: EventsSection | None = None,
    *,
    id_prefix: str = "",
    keep_frames: bool = True,
) -> EventEngine:
    """One EventEngine from the validated sections; id_prefix: e.g. the run id."""
    tracker = Tracker(
        iou_threshold=tracking.iou_threshold,
        max_disappeared=tracking.max_disappeared,
        velocity_smoothing=tracking.velocity_smoothing,
        match_buffer=tracking.match_buffer,
        id_prefix=id_prefix,
    )
    return EventEngine(
        tracker,
        objects.to_filter(),
        [z.to_zone() for z in zones],
        score_margin=(events or EventsSection.model_validate({})).score_margin,
        keep_frames=keep_frames,
    )
