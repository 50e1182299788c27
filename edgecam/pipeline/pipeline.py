"""Threaded pipeline: capture -> inference -> output, so the interpreter never waits.

Three threads joined by small channels:

- capture: ``source.read()`` (decode), optional motion gate, then into the frame channel —
  a :class:`LatestSlot` for live sources (a newer frame replaces a waiting one; the stale one
  is dropped and counted, so latency stays bounded) or a :class:`BoundedQueue` for replays
  (every frame in order; a full queue blocks capture: back-pressure, nothing dropped);
- inference: prepare + invoke, back to back (prepare writes into the interpreter's input
  tensor; an engine with ``prepare_detached`` is prepared in the capture thread instead);
- output: postprocess (the outputs are copies, so decoding/NMS leaves the interpreter's
  thread), the sinks, then ``on_result``; sinks must not block on the network.

TFLite's ``invoke()`` releases the GIL, so decoding and publishing overlap with inference.
Any stage's exception stops every thread and is re-raised, unchanged, by :meth:`run`.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from edgecam.config.pipeline import PipelineSection
from edgecam.core.motion import MotionGate
from edgecam.pipeline.channels import BoundedQueue, LatestSlot
from edgecam.pipeline.metrics import CpuMeter, RateMeter, RollingStat, peak_rss_mb, rss_mb
from edgecam.types import Frame, Result

if TYPE_CHECKING:  # protocols only: the pipeline never names a concrete adapter
    from edgecam.sinks.base import Sink
    from edgecam.sources.base import Source

log = logging.getLogger(__name__)

#: Per-frame stages timed by the pipeline (Result.timings_ms keys, in order).
STAGES = ("capture", "preprocess", "invoke", "postprocess", "output")


class InferenceEngine(Protocol):
    """The three Engine steps (edgecam.pipeline.engine.Engine has them).

    An engine whose prepare() fills a buffer of its own instead of the interpreter's input
    tensor may say so with ``prepare_detached = True``: the pipeline then preprocesses in the
    capture thread, so the interpreter's thread only invokes.
    """

    def prepare(self, frame: Frame, pixel_width: int | None = None) -> Any: ...

    def infer(self, prepared: Any) -> tuple[Any, float]: ...

    def postprocess(self, prepared: Any, outputs: Any, invoke_ms: float) -> Result: ...


@dataclass(frozen=True, slots=True)
class _Captured:
    """A frame on its way to inference; `prepared` is set when the capture thread prepared it."""

    frame: Frame
    prepared: Any
    capture_ms: float


@dataclass(frozen=True, slots=True)
class _Inferred:
    """Raw interpreter outputs (copies) on their way to postprocess in the output thread."""

    prepared: Any
    outputs: Any
    invoke_ms: float
    capture_ms: float


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
        admit: Callable[[], bool] | None = None,
    ) -> None:
        """admit: asked per captured frame; False skips inference (detection switched off)."""
        self.source = source
        self.engine = engine
        self.sinks = tuple(sinks)
        self.config = config
        self.on_result = on_result
        self.on_progress = on_progress
        self.admit = admit
        #: Set once the first result went through the sinks (service readiness).
        self.first_result = threading.Event()
        self._prepare_early = bool(getattr(engine, "prepare_detached", False))
        self._frames: BoundedQueue[_Captured] = (
            LatestSlot() if source.live else BoundedQueue(config.frame_queue)
        )
        self._results: BoundedQueue[_Inferred] = BoundedQueue(config.result_queue)
        self._gate = (
            MotionGate(
                threshold=config.motion_threshold,
                min_area=config.motion_min_area,
                refresh_s=config.motion_refresh_s,
                width=config.motion_width,
            )
            if config.motion
            else None
        )
        self._timings = {stage: RollingStat() for stage in STAGES}
        self._latency = RollingStat()
        self._rate_in, self._rate_out = RateMeter(), RateMeter()
        self._cpu = CpuMeter()
        self._stats_cpu = CpuMeter()
        self._frames_in = self._processed = self._motion_skipped = self._discarded = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()  # guards _error, _reason, _last_progress
        self._error: BaseException | None = None
        self._reason: str | None = None
        self._last_progress = float("-inf")
        self._inflight_since: float | None = None
        self._started = time.monotonic()
        self._first_result_s: float | None = None
        self._max_frames: int | None = None
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
        self._max_frames = max_frames
        self._started = time.monotonic()
        self._cpu.reset()
        self._stats_cpu.reset()
        threads = [
            threading.Thread(target=self._guard, args=(name, body), name=f"edgecam-{name}")
            for name, body in (
                ("capture", self._capture),
                ("inference", self._inference),
                ("output", self._output),
            )
        ]
        for thread in threads:
            thread.daemon = True  # a thread stuck in a driver must not keep the process alive
            thread.start()
        try:
            while threads[-1].is_alive():  # output finishes last, in every kind of ending
                if stop is not None and stop.is_set():
                    self.stop()
                threads[-1].join(0.05)
        finally:
            self.stop()
            self._join(threads)
        elapsed = time.monotonic() - self._started
        if self._error is not None:
            raise self._error
        return self._summary(elapsed)

    def stop(self) -> None:
        """Stop capturing and drop queued frames; results already computed still go out.

        Thread-safe and idempotent; run() returns once the threads finished.
        """
        self._set_reason("stopped")
        self._stop.set()
        self._discard(self._frames.close(discard=True))

    def _fail(self, stage: str, exc: BaseException) -> None:
        with self._lock:
            if self._error is None:
                self._error = exc
                self._reason = "error"
        log.debug("pipeline %s stage failed: %r", stage, exc)
        self._stop.set()
        self._discard(self._frames.close(discard=True) + self._results.close(discard=True))

    def _discard(self, count: int) -> None:
        """Count frames read but never delivered because a stop or error cut the run short."""
        if count:
            with self._lock:
                self._discarded += count

    def _set_reason(self, reason: str) -> None:
        with self._lock:
            if self._reason is None:
                self._reason = reason

    def _join(self, threads: list[threading.Thread]) -> None:
        """Join within stop_timeout_s; past half of it, unblock capture by closing the source."""
        timeout = self.config.stop_timeout_s
        deadline = time.monotonic() + timeout
        threads[0].join(timeout / 2)
        if threads[0].is_alive():
            log.warning("capture did not stop in %.1f s; closing the source", timeout / 2)
            self.source.close()
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if threads[-1].is_alive():  # sinks too slow to drain: give up on queued results
            self._discard(self._results.close(discard=True))
            threads[-1].join(0.2)
        stuck = [t.name for t in threads if t.is_alive()]
        if stuck:
            log.error("pipeline threads still running after %.1f s: %s", timeout, stuck)

    def _guard(self, stage: str, body: Callable[[], None]) -> None:
        try:
            body()
        except BaseException as exc:  # re-raised by run() in the caller's thread
            self._fail(stage, exc)

    # -- stages ----------------------------------------------------------------------------

    def _capture(self) -> None:
        limit = None if self.source.live else self._max_frames
        sent = 0
        try:
            while not self._stop.is_set() and (limit is None or sent < limit):
                start = time.perf_counter()
                frame = self.source.read()
                capture_ms = (time.perf_counter() - start) * 1000
                if frame is None:
                    self._set_reason("end")
                    break
                self._frames_in += 1
                self._rate_in.mark()
                self._timings["capture"].add(capture_ms)
                if self.admit is not None and not self.admit():
                    if self._inflight_since is None:  # paused is alive, not hung
                        self._progress(time.monotonic())
                    continue
                if self._gate is not None and not self._gate.check(frame, time.monotonic()).run:
                    self._motion_skipped += 1
                    if self._inflight_since is None:  # a hung interpreter must not look alive
                        self._progress(time.monotonic())
                    continue
                prepared = (
                    self.engine.prepare(frame, self.source.pixel_width)
                    if self._prepare_early
                    else None
                )
                if not self._frames.put(_Captured(frame, prepared, capture_ms)):
                    self._discard(1)
                    break
                sent += 1
        finally:
            self._frames.close()  # inference drains what is queued, then ends

    def _inference(self) -> None:
        """prepare (unless capture did) + invoke: nothing the interpreter could hand off."""
        engine = self.engine
        try:
            while (item := self._frames.get()) is not None:
                self._inflight_since = time.monotonic()
                prepared = item.prepared
                if prepared is None:
                    prepared = engine.prepare(item.frame, self.source.pixel_width)
                outputs, invoke_ms = engine.infer(prepared)
                self._inflight_since = None
                if not self._results.put(_Inferred(prepared, outputs, invoke_ms, item.capture_ms)):
                    self._discard(1)
                    break
        finally:
            self._results.close()  # output drains what is queued, then ends

    def _output(self) -> None:
        """postprocess (outputs are copies, so it can run here) + sinks + callbacks."""
        engine, timings = self.engine, self._timings
        while (item := self._results.get()) is not None:
            result = engine.postprocess(item.prepared, item.outputs, item.invoke_ms)
            # The dict is fresh from postprocess and only this thread holds it so far.
            result.timings_ms["capture"] = item.capture_ms
            start = time.perf_counter()
            for sink in self.sinks:
                sink.handle(result)
            output_ms = (time.perf_counter() - start) * 1000
            now = time.monotonic()
            for stage in ("preprocess", "invoke", "postprocess"):
                if stage in result.timings_ms:
                    timings[stage].add(result.timings_ms[stage])
            timings["output"].add(output_ms)
            self._latency.add((now - result.monotonic) * 1000)
            self._processed += 1
            self._rate_out.mark(now)
            if self.on_result is not None:
                stamped = {**result.timings_ms, "output": output_ms}
                self.on_result(dataclasses.replace(result, timings_ms=stamped))
            if not self.first_result.is_set():
                self._first_result_s = now - self._started
                self.first_result.set()
            self._progress(now)
            if self._max_frames is not None and self._processed >= self._max_frames:
                self._set_reason("max_frames")
                self.stop()
                self._discard(self._results.close(discard=True))
                break

    def _progress(self, now: float) -> None:
        """Rate-limited on_progress; called only when a frame was handled (watchdog food)."""
        if self.on_progress is None:
            return
        with self._lock:
            if now - self._last_progress < self.config.progress_interval_s:
                return
            self._last_progress = now
        self.on_progress(self.progress())

    # -- reporting -------------------------------------------------------------------------

    def progress(self) -> PipelineStats:
        return PipelineStats(
            frames_in=self._frames_in,
            processed=self._processed,
            dropped=self._frames.dropped,
            motion_skipped=self._motion_skipped,
            uptime_s=round(time.monotonic() - self._started, 3),
        )

    def stats(self) -> dict[str, Any]:
        """Snapshot for the MQTT `stats` topic; cpu_percent is since the previous call."""
        cpu = self._stats_cpu.percent()
        self._stats_cpu.reset()
        return {
            **dataclasses.asdict(self.progress()),
            "fps_in": round(self._rate_in.rate(), 2),
            "fps_out": round(self._rate_out.rate(), 2),
            "queue_depth": {"frames": self._frames.depth, "results": self._results.depth},
            "stages_ms": {s: self._timings[s].summary() for s in STAGES},
            "latency_ms": self._latency.summary(),
            "cpu_percent": round(cpu, 1),
            "rss_mb": rss_mb(),
        }

    def _summary(self, elapsed: float) -> PipelineSummary:
        return PipelineSummary(
            reason=self._reason or "end",
            elapsed_s=round(elapsed, 4),
            frames_in=self._frames_in,
            processed=self._processed,
            dropped=self._frames.dropped,
            discarded=self._discarded,
            motion_skipped=self._motion_skipped,
            first_result_s=self._first_result_s,
            stages_ms={s: self._timings[s].summary() for s in STAGES},
            latency_ms=self._latency.summary(),
            cpu_percent=round(self._cpu.percent(), 1),
            peak_rss_mb=peak_rss_mb(),
        )
