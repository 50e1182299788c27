"""The per-frame work of a run and the two ways of arranging it in threads.

:class:`Stages` owns what every arrangement does per frame — read (with the motion gate),
deliver (sinks, books, callbacks) — and the counters; :func:`sequential_threads` and
:func:`pipelined_threads` build the threads of one *segment* (a stretch of the run in one
arrangement, see :mod:`edgecam.pipeline.execution`). A segment ends when the run ends, when
its calibration budget is met or when a drift re-check asks for it; then its threads drain
what they hold, in order, so a replay never loses or reorders a frame across segments.

Kept lean on purpose: per result, one lock-free append per stage into preallocated rings,
one clock read, no copies of the result; percentiles only when someone asks.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from edgecam.config.pipeline import PipelineSection
from edgecam.core.motion import MotionGate
from edgecam.pipeline.arrangements import Budget, Trial
from edgecam.pipeline.channels import BoundedQueue, LatestSlot
from edgecam.pipeline.metrics import RateMeter, RollingStat
from edgecam.types import Frame, Result

if TYPE_CHECKING:  # protocols only: the pipeline never names a concrete adapter
    from edgecam.pipeline.arrangements import Arrangement
    from edgecam.sinks.base import Sink
    from edgecam.sources.base import Source

#: Per-frame stages timed by the pipeline (Result.timings_ms keys, in order).
STAGES = ("capture", "preprocess", "invoke", "postprocess", "output")


class InferenceEngine(Protocol):
    """The three Engine steps (edgecam.pipeline.engine.Engine has them).

    An engine whose prepare() fills a buffer of its own instead of the interpreter's input
    tensor may say so with ``prepare_detached = True``: the pipelined arrangement then
    preprocesses in the capture thread, so the interpreter's thread only invokes. An engine
    with ``use_threads(n)`` and ``threads`` lets adaptive execution change the interpreter's
    thread count between segments.
    """

    def prepare(self, frame: Frame, pixel_width: int | None = None) -> Any: ...

    def infer(self, prepared: Any) -> tuple[Any, float]: ...

    def postprocess(self, prepared: Any, outputs: Any, invoke_ms: float) -> Result: ...


@dataclass(frozen=True, slots=True)
class Captured:
    """A frame on its way to inference; `prepared` is set when the capture thread prepared it."""

    frame: Frame
    prepared: Any
    capture_ms: float


@dataclass(frozen=True, slots=True)
class Inferred:
    """Raw interpreter outputs (copies) on their way to postprocess in the output thread."""

    prepared: Any
    outputs: Any
    invoke_ms: float
    capture_ms: float


class Segment:
    """One stretch of a run in one arrangement, and what it measured.

    `end` is set when the segment should stop reading: its calibration budget was met
    (reason "budget") or the supervisor asked for a re-check (reason "recheck").
    """

    def __init__(self, arrangement: Arrangement, budget: Budget | None) -> None:
        self.arrangement = arrangement
        self.budget = budget
        self.end = threading.Event()
        #: Set by the segment's last thread when it returns: waiting on it (rather than
        #: joining with short timeouts) is safe against a KeyboardInterrupt in the waiter.
        self.done = threading.Event()
        self.reason: str | None = None
        self.started = time.monotonic()
        self.frames_in = 0
        self._results = 0
        self._measured = 0
        self._first: float | None = None
        self._last = 0.0
        self._latency = 0.0
        self._stages = dict.fromkeys(STAGES, 0.0)

    def finish(self, reason: str) -> None:
        if not self.end.is_set():
            self.reason = reason
            self.end.set()

    def note(self, now: float, latency_ms: float, timings: dict[str, float]) -> None:
        """One delivered result (output thread only)."""
        self._results += 1
        budget = self.budget
        if budget is None or self.end.is_set():  # draining after the budget: not measured
            return
        if self._results == budget.warmup:
            self._first = now
            return
        if self._first is None:
            return
        self._measured += 1
        self._last = now
        self._latency += latency_ms
        for stage in STAGES:
            self._stages[stage] += timings.get(stage, 0.0)
        span = now - self._first
        if (self._measured >= budget.min_frames and span >= budget.min_s) or (
            now - self.started >= budget.max_s and self._measured >= 2
        ):
            self.finish("budget")

    def trial(self) -> Trial | None:
        """The throughput after the warm-up; None when too little was measured."""
        if self._first is None or self._measured < 2:
            return None
        seconds = self._last - self._first
        if seconds <= 0:
            return None
        n = self._measured
        elapsed = max(1e-9, time.monotonic() - self.started)
        return Trial(
            self.arrangement,
            n,
            seconds,
            n / seconds,
            self.frames_in / elapsed,
            self._latency / n,
            {stage: total / n for stage, total in self._stages.items()},
        )


class Control(Protocol):
    """What the stages need from the run that owns them (the Pipeline)."""

    stop_event: threading.Event

    def fail(self, stage: str, exc: BaseException) -> None: ...

    def ended(self, reason: str) -> None: ...


class Stages:
    """Per-frame work and counters shared by every segment of one run."""

    def __init__(
        self,
        source: Source,
        engine: InferenceEngine,
        sinks: Sequence[Sink],
        config: PipelineSection,
        control: Control,
        *,
        on_result: Callable[[Result], None] | None,
        on_progress: Callable[[], None] | None,
        admit: Callable[[], bool] | None = None,
    ) -> None:
        """admit: asked per captured frame; False skips inference (detection switched off)."""
        self.source, self.engine, self.sinks = source, engine, tuple(sinks)
        self.admit = admit
        self.config, self.control = config, control
        self.on_result, self.on_progress = on_result, on_progress
        self.prepare_early = bool(getattr(engine, "prepare_detached", False))
        # A sink that does not say otherwise may look at Result.frame's pixels (snapshots, a
        # live view); when none does, frames drop them once prepared.
        lighten = getattr(engine, "lighten", None)
        needs_pixels = any(getattr(sink, "needs_pixels", True) for sink in self.sinks)
        self.lighten: Callable[[Any], Any] | None = None if needs_pixels else lighten
        self.gate = (
            MotionGate(
                threshold=config.motion_threshold,
                min_area=config.motion_min_area,
                refresh_s=config.motion_refresh_s,
                width=config.motion_width,
            )
            if config.motion
            else None
        )
        self.timings = {stage: RollingStat() for stage in STAGES}
        self.latency = RollingStat()
        self.rate_in, self.rate_out = RateMeter(), RateMeter()
        self.first_result = threading.Event()
        self.started = time.monotonic()
        self.first_result_s: float | None = None
        self.frames_in = self.processed = self.motion_skipped = self.sent = 0
        self.dropped_before = 0  # live drops of finished segments
        self.max_frames: int | None = None
        self.inflight_since: float | None = None
        self._pending: tuple[Frame, float] | None = None
        self._lock = threading.Lock()
        self._last_progress = float("-inf")

    # -- reading -------------------------------------------------------------------------

    def peek(self) -> Frame | None:
        """Read the first frame before the first segment (it tells the source's signature);
        the first segment then processes it like any other."""
        start = time.perf_counter()
        frame = self.source.read()
        if frame is not None:
            self._pending = (frame, (time.perf_counter() - start) * 1000)
        return frame

    def capture(self, segment: Segment, *, prepare: bool) -> Captured | None:
        """The next frame to infer; None when the source ended, the run stops, the segment
        ends or a replay reached max_frames. Frames the motion gate skips never leave here."""
        limit = None if self.source.live else self.max_frames
        stop = self.control.stop_event
        while not stop.is_set() and not segment.end.is_set():
            if limit is not None and self.sent >= limit:
                return None
            if self._pending is not None:
                (frame, capture_ms), self._pending = self._pending, None
            else:
                start = time.perf_counter()
                read = self.source.read()
                capture_ms = (time.perf_counter() - start) * 1000
                if read is None:
                    self.control.ended("end")
                    return None
                frame = read
            self.frames_in += 1
            segment.frames_in += 1
            self.rate_in.mark()
            self.timings["capture"].add(capture_ms)
            if self.admit is not None and not self.admit():
                if self.inflight_since is None:  # paused is alive, not hung
                    self.progress(time.monotonic())
                continue
            if self.gate is not None and not self.gate.check(frame, time.monotonic()).run:
                self.motion_skipped += 1
                if self.inflight_since is None:  # a hung interpreter must not look alive
                    self.progress(time.monotonic())
                continue
            self.sent += 1
            prepared = self.prepare(frame) if prepare and self.prepare_early else None
            return Captured(frame, prepared, capture_ms)
        return None

    def prepare(self, frame: Frame) -> Any:
        prepared = self.engine.prepare(frame, self.source.pixel_width)
        return self.lighten(prepared) if self.lighten is not None else prepared

    # -- delivering ----------------------------------------------------------------------

    def deliver(self, result: Result, capture_ms: float, segment: Segment) -> bool:
        """Sinks, books and callbacks for one result; True once max_frames were delivered."""
        timings = result.timings_ms  # fresh from postprocess, only this thread holds it
        timings["capture"] = capture_ms
        start = time.perf_counter()
        for sink in self.sinks:
            sink.handle(result)
        timings["output"] = (time.perf_counter() - start) * 1000
        now = time.monotonic()
        for stage, book in self.timings.items():
            if stage != "capture" and stage in timings:
                book.add(timings[stage])
        latency_ms = (now - result.monotonic) * 1000
        self.latency.add(latency_ms)
        self.processed += 1
        self.rate_out.mark(now)
        segment.note(now, latency_ms, timings)
        if self.on_result is not None:
            self.on_result(result)
        if not self.first_result.is_set():
            self.first_result_s = now - self.started
            self.first_result.set()
        self.progress(now)
        return self.max_frames is not None and self.processed >= self.max_frames

    def progress(self, now: float) -> None:
        """Rate-limited on_progress; called only when a frame was handled (watchdog food)."""
        if self.on_progress is None:
            return
        with self._lock:
            if now - self._last_progress < self.config.progress_interval_s:
                return
            self._last_progress = now
        self.on_progress()

    def recent_means(self) -> dict[str, float]:
        """Mean of each stage over its recent window (for drift checks; not per frame)."""
        out = {}
        for stage, book in self.timings.items():
            recent = book.recent()
            if recent.size:
                out[stage] = float(recent.mean())
        return out


# -- the two arrangements ----------------------------------------------------------------


#: Niceness added to the capture and output threads when the interpreter has every core.
HELPER_NICE = 10


def lower_priority(increment: int) -> bool:
    """Make the calling thread nicer (Linux schedules threads, so this is per thread).

    Only ever lowers it, which needs no privilege; False where threads have no niceness.
    """
    try:
        tid = threading.get_native_id()
        current = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, current + increment))
    except (AttributeError, OSError):
        return False
    return True


def _guarded(
    control: Control,
    name: str,
    body: Callable[[], None],
    done: Callable[[], object],
    nice: int = 0,
) -> threading.Thread:
    def target() -> None:
        try:
            if nice:
                lower_priority(nice)
            body()
        except BaseException as exc:  # re-raised by Pipeline.run() in the caller's thread
            control.fail(name, exc)
        finally:
            done()

    thread = threading.Thread(target=target, name=f"edgecam-{name}")
    thread.daemon = True  # a thread stuck in a driver must not keep the process alive
    return thread


def sequential_threads(stages: Stages, segment: Segment) -> list[threading.Thread]:
    """One thread does every stage of a frame before reading the next."""
    engine = stages.engine

    def body() -> None:
        while (item := stages.capture(segment, prepare=False)) is not None:
            stages.inflight_since = time.monotonic()
            prepared = stages.prepare(item.frame)
            outputs, invoke_ms = engine.infer(prepared)
            stages.inflight_since = None
            result = engine.postprocess(prepared, outputs, invoke_ms)
            if stages.deliver(result, item.capture_ms, segment):
                stages.control.ended("max_frames")
                break

    return [_guarded(stages.control, "sequential", body, segment.done.set)]


class Channels:
    """The two channels of a pipelined segment (closed by a stop or an error)."""

    def __init__(self, live: bool, config: PipelineSection) -> None:
        self.frames: BoundedQueue[Captured] = (
            LatestSlot() if live else BoundedQueue(config.frame_queue)
        )
        self.results: BoundedQueue[Inferred] = BoundedQueue(config.result_queue)

    def close(self, *, discard: bool) -> int:
        return self.frames.close(discard=discard) + self.results.close(discard=discard)


def pipelined_threads(
    stages: Stages,
    segment: Segment,
    channels: Channels,
    discard: Callable[[int], None],
    *,
    helpers_yield: bool = False,
) -> list[threading.Thread]:
    """capture (+ prepare) -> inference (invoke) -> output (postprocess + sinks).

    helpers_yield: the interpreter's threads occupy every core, so capture and output run
    at a lower priority and fill the gaps the interpreter leaves (between invokes, at its
    synchronisation points) instead of taking a core from it mid-invoke. Measured on the
    2-core x86 under load: 3-15 % more frames than the same threads at equal priority.
    """
    nice = HELPER_NICE if helpers_yield else 0
    engine = stages.engine
    frames, results = channels.frames, channels.results

    def capture() -> None:
        while (item := stages.capture(segment, prepare=True)) is not None:
            if not frames.put(item):
                discard(1)
                break

    def inference() -> None:
        while (item := frames.get()) is not None:
            stages.inflight_since = time.monotonic()
            prepared = item.prepared
            if prepared is None:
                prepared = stages.prepare(item.frame)
            outputs, invoke_ms = engine.infer(prepared)
            stages.inflight_since = None
            if not results.put(Inferred(prepared, outputs, invoke_ms, item.capture_ms)):
                discard(1)
                break

    def output() -> None:
        while (item := results.get()) is not None:
            result = engine.postprocess(item.prepared, item.outputs, item.invoke_ms)
            if stages.deliver(result, item.capture_ms, segment):
                stages.control.ended("max_frames")
                discard(channels.close(discard=True))
                break

    control = stages.control
    return [
        _guarded(control, "capture", capture, frames.close, nice),  # inference drains, ends
        _guarded(control, "inference", inference, results.close),  # output drains, then ends
        _guarded(control, "output", output, segment.done.set, nice),
    ]
