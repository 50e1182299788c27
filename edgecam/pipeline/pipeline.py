"""The run loop: capture -> preprocess -> invoke -> postprocess -> sinks, arranged to be fast.

Two arrangements (:mod:`edgecam.pipeline.flow`):

- sequential: one thread does every stage of a frame, then reads the next — no hand-offs,
  nothing competing with the interpreter's own worker threads;
- pipelined: capture (+ preprocessing) -> inference -> output threads joined by small
  channels — a :class:`LatestSlot` for live sources (a newer frame replaces a waiting one;
  the stale one is dropped and counted, so latency stays bounded) or a :class:`BoundedQueue`
  for replays (every frame in order; back-pressure, nothing dropped). TFLite's ``invoke()``
  releases the GIL, so decoding and publishing overlap with inference.

Which one runs, and with how many interpreter threads, is decided per *segment* by an
:class:`AdaptiveExecution` (measured, cached, re-checked when stage costs drift; see
:mod:`edgecam.pipeline.execution`). The caller's thread supervises: it waits for the
segment's threads, handles stop requests and deadlines, and re-raises, unchanged, any stage's
exception from :meth:`run`.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from edgecam.config.pipeline import PipelineSection
from edgecam.pipeline.arrangements import Arrangement, Step, usable_cores
from edgecam.pipeline.execution import AdaptiveExecution, execution_for
from edgecam.pipeline.flow import (
    STAGES,
    Channels,
    InferenceEngine,
    Segment,
    Stages,
    pipelined_threads,
    sequential_threads,
)
from edgecam.pipeline.metrics import CpuMeter, peak_rss_mb, rss_mb
from edgecam.types import Frame, Result

if TYPE_CHECKING:  # protocols only: the pipeline never names a concrete adapter
    from edgecam.sinks.base import Sink
    from edgecam.sources.base import Source

__all__ = ["STAGES", "InferenceEngine", "Pipeline", "PipelineStats", "PipelineSummary"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PipelineStats:
    """Cheap counters handed to on_progress (the service's watchdog ping)."""

    frames_in: int
    processed: int
    dropped: int
    motion_skipped: int
    uptime_s: float


@dataclass(frozen=True)
class PipelineSummary:
    """What a run did. reason: "end" (source ended), "max_frames", "stopped" or "error".

    dropped: stale live frames replaced by newer ones; discarded: frames or results still
    queued when a stop or error cut the run short. first_result_s: run() start to the first
    result through the sinks. stages_ms / latency_ms: mean, p50, p95 over the recent window.
    execution: the arrangement adaptive execution ran with, and the figures behind it.
    """

    reason: str
    elapsed_s: float
    frames_in: int
    processed: int
    dropped: int
    discarded: int
    motion_skipped: int
    first_result_s: float | None
    stages_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)
    cpu_percent: float = 0.0
    peak_rss_mb: float = 0.0
    execution: dict[str, Any] = field(default_factory=dict)

    @property
    def fps(self) -> float:
        return self.processed / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["fps"] = round(self.fps, 2)
        return out


class Pipeline:
    """One source, one engine, some sinks; run() once. The caller owns (and closes) all three."""

    def __init__(
        self,
        source: Source,
        engine: InferenceEngine,
        sinks: Sequence[Sink],
        *,
        config: PipelineSection,
        on_result: Callable[[Result], None] | None = None,
        on_progress: Callable[[PipelineStats], None] | None = None,
        execution: AdaptiveExecution | None = None,
        admit: Callable[[], bool] | None = None,
    ) -> None:
        """admit: asked per captured frame; False skips inference (detection switched off)."""
        self.source = source
        self.engine = engine
        self.sinks = tuple(sinks)
        self.config = config
        self.execution = execution or execution_for(engine, config)
        #: Set when the run is over for any reason: no more frames are read.
        self.stop_event = threading.Event()
        self._stopping = threading.Event()  # stop() or an error: drain within the deadline
        self._on_progress = on_progress
        self._stages = Stages(
            source,
            engine,
            sinks,
            config,
            self,
            on_result=on_result,
            on_progress=self._progress if on_progress else None,
            admit=admit,
        )
        #: Set once the first result went through the sinks (service readiness).
        self.first_result = self._stages.first_result
        self._cpu = CpuMeter()
        self._stats_cpu = CpuMeter()
        self._lock = threading.Lock()  # guards _error, _reason, _discarded, _channels
        self._error: BaseException | None = None
        self._reason: str | None = None
        self._discarded = 0
        self._channels: Channels | None = None
        self._segment: Segment | None = None
        self._ran = False

    # -- control ---------------------------------------------------------------------------

    def run(
        self, *, max_frames: int | None = None, stop: threading.Event | None = None
    ) -> PipelineSummary:
        """Run until the source ends, max_frames results, stop() / `stop` is set, or an error.

        Blocks the calling thread; KeyboardInterrupt there stops the threads (within the
        configured deadline) and propagates. A stage's exception is re-raised here.
        """
        if self._ran:
            raise RuntimeError("Pipeline.run() can only be called once")
        self._ran = True
        stages = self._stages
        stages.max_frames = max_frames
        stages.started = time.monotonic()
        self._cpu.reset()
        self._stats_cpu.reset()
        try:
            first = stages.peek()
            if first is None:
                self.ended("end")
            else:
                self._segments(self._first_step(first), stop)
        except BaseException as exc:
            if self._error is None and not isinstance(exc, KeyboardInterrupt):
                self.fail("capture", exc)
            else:
                raise
        finally:
            self.stop()
        elapsed = time.monotonic() - stages.started
        if self._error is not None:
            raise self._error
        return self._summary(elapsed)

    def _first_step(self, first: Frame) -> Step:
        width, height = first.pixel_size
        kind = self.source.name.split(":", 1)[0]
        codec = getattr(self.source, "codec", None)
        signature = f"{kind}:{width}x{height}" + (f":{codec}" if codec else "")
        return self.execution.start(
            signature,
            live=self.source.live,
            current_threads=getattr(self.engine, "threads", None),
        )

    def _segments(self, step: Step | None, stop: threading.Event | None) -> None:
        """Run segment after segment until the run ends; each is drained before the next."""
        while step is not None and not self.stop_event.is_set():
            segment = self._begin(step)
            threads = (
                sequential_threads(self._stages, segment)
                if step.arrangement.mode == "sequential"
                else pipelined_threads(
                    self._stages,
                    segment,
                    self._open_channels(),
                    self.discard,
                    helpers_yield=(step.arrangement.threads or 0) >= usable_cores(),
                )
            )
            for thread in threads:
                thread.start()
            try:
                self._supervise(threads, segment, stop)
            except BaseException:
                self.stop()
                raise
            finally:
                self._join(threads)
                self._close_segment()
            if self.stop_event.is_set() or segment.reason is None:
                break
            step = self.execution.after(segment.arrangement, segment.reason, segment.trial())

    def _begin(self, step: Step) -> Segment:
        threads = step.arrangement.threads
        use_threads = getattr(self.engine, "use_threads", None)
        if threads is not None and callable(use_threads):
            use_threads(threads)
        segment = Segment(step.arrangement, step.budget)
        with self._lock:
            self._segment = segment
        return segment

    def _open_channels(self) -> Channels:
        channels = Channels(self.source.live, self.config)
        with self._lock:
            self._channels = channels
        return channels

    def _close_segment(self) -> None:
        with self._lock:
            channels, self._channels = self._channels, None
        if channels is not None:
            self._stages.dropped_before += channels.frames.dropped

    def _supervise(
        self, threads: list[threading.Thread], segment: Segment, stop: threading.Event | None
    ) -> None:
        """Wait for the segment's last thread; pass on stop requests; ask for drift re-checks."""
        execution = self.execution
        next_check = time.monotonic() + execution.next_check_s()
        while not segment.done.is_set():  # output (or the only thread) finishes last
            if stop is not None and stop.is_set():
                self.stop()
            if self._stopping.is_set():
                return  # _join() gives the threads the stop deadline
            segment.done.wait(0.05)
            interval = execution.next_check_s()
            if interval > 0 and segment.budget is None and time.monotonic() >= next_check:
                if execution.drifted(self._stages.recent_means()):
                    segment.finish("recheck")
                next_check = time.monotonic() + execution.next_check_s()

    def stop(self) -> None:
        """Stop capturing and drop queued frames; results already computed still go out.

        Thread-safe and idempotent; run() returns once the threads finished.
        """
        self.ended("stopped")
        self._stopping.set()
        with self._lock:
            channels = self._channels
        if channels is not None:
            self.discard(channels.frames.close(discard=True))

    def ended(self, reason: str) -> None:
        """The run is over: `reason` "end", "max_frames" or "stopped" (the first one counts)."""
        with self._lock:
            if self._reason is None:
                self._reason = reason
        self.stop_event.set()

    def fail(self, stage: str, exc: BaseException) -> None:
        with self._lock:
            if self._error is None:
                self._error = exc
                self._reason = "error"
            channels = self._channels
        log.debug("pipeline %s stage failed: %r", stage, exc)
        self.stop_event.set()
        self._stopping.set()
        if channels is not None:
            self.discard(channels.close(discard=True))

    def discard(self, count: int) -> None:
        """Count frames read but never delivered because a stop or error cut the run short."""
        if count:
            with self._lock:
                self._discarded += count

    def _join(self, threads: list[threading.Thread]) -> None:
        """Join within stop_timeout_s; past half of it, unblock capture by closing the source."""
        timeout = self.config.stop_timeout_s
        deadline = time.monotonic() + timeout
        threads[0].join(timeout / 2)
        if threads[0].is_alive():
            log.warning("capture did not stop in %.1f s; closing the source", timeout / 2)
            self.source.close()
        for thread in threads:
            while thread.is_alive() and time.monotonic() < deadline:
                thread.join(min(0.1, max(0.0, deadline - time.monotonic())))
        if threads[-1].is_alive():  # sinks too slow to drain: give up on queued results
            with self._lock:
                channels = self._channels
            if channels is not None:
                self.discard(channels.results.close(discard=True))
            threads[-1].join(0.2)
        stuck = [t.name for t in threads if t.is_alive()]
        if stuck:
            log.error("pipeline threads still running after %.1f s: %s", timeout, stuck)

    def _progress(self) -> None:
        if self._on_progress is not None:
            self._on_progress(self.progress())

    # -- reporting -------------------------------------------------------------------------

    @property
    def dropped(self) -> int:
        with self._lock:
            channels = self._channels
        current = channels.frames.dropped if channels is not None else 0
        return self._stages.dropped_before + current

    @property
    def arrangement(self) -> Arrangement:
        """The arrangement running now (or last)."""
        segment = self._segment
        return segment.arrangement if segment is not None else self.execution.chosen

    def progress(self) -> PipelineStats:
        stages = self._stages
        return PipelineStats(
            frames_in=stages.frames_in,
            processed=stages.processed,
            dropped=self.dropped,
            motion_skipped=stages.motion_skipped,
            uptime_s=round(time.monotonic() - stages.started, 3),
        )

    def stats(self) -> dict[str, Any]:
        """Snapshot for the MQTT `stats` topic; cpu_percent is since the previous call."""
        cpu = self._stats_cpu.percent()
        self._stats_cpu.reset()
        stages = self._stages
        with self._lock:
            channels = self._channels
        return {
            **dataclasses.asdict(self.progress()),
            "fps_in": round(stages.rate_in.rate(), 2),
            "fps_out": round(stages.rate_out.rate(), 2),
            "queue_depth": {
                "frames": channels.frames.depth if channels else 0,
                "results": channels.results.depth if channels else 0,
            },
            "stages_ms": {s: stages.timings[s].summary() for s in STAGES},
            "latency_ms": stages.latency.summary(),
            "cpu_percent": round(cpu, 1),
            "rss_mb": rss_mb(),
            "execution": self.execution_report(),
        }

    def execution_report(self) -> dict[str, Any]:
        report = self.execution.report()
        report["running"] = self.arrangement.label
        return report

    def _summary(self, elapsed: float) -> PipelineSummary:
        stages = self._stages
        return PipelineSummary(
            reason=self._reason or "end",
            elapsed_s=round(elapsed, 4),
            frames_in=stages.frames_in,
            processed=stages.processed,
            dropped=self.dropped,
            discarded=self._discarded,
            motion_skipped=stages.motion_skipped,
            first_result_s=stages.first_result_s,
            stages_ms={s: stages.timings[s].summary() for s in STAGES},
            latency_ms=stages.latency.summary(),
            cpu_percent=round(self._cpu.percent(), 1),
            peak_rss_mb=peak_rss_mb(),
            execution=self.execution_report(),
        )
