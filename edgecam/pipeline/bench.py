"""Benchmark modes measured inside this process: raw invoke, the one-thread loop, the pipeline.

Same engine, same input, same output work (each result serialised as a JSON line into
/dev/null) in every mode, so the ratios isolate the effect of the arrangement. The
whole-process modes (`edgecam run`, the plain loop) are in :mod:`edgecam.pipeline.bench_proc`;
:mod:`edgecam.pipeline.bench_suite` runs them all in alternating rounds. Latency is
capture to result: from the moment a frame was read (Frame.monotonic) until its result went
through the sinks. Each mode resets the kernel's peak-RSS mark first, so its peak is its own.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from edgecam.config.model import ModelSection
from edgecam.config.pipeline import PipelineSection
from edgecam.errors import SourceError
from edgecam.pipeline.engine import Engine, open_engine
from edgecam.pipeline.execution import AdaptiveExecution
from edgecam.pipeline.metrics import (
    CpuMeter,
    peak_rss_mb,
    process_age_s,
    reset_peak_rss,
    system_busy_s,
)
from edgecam.pipeline.pipeline import STAGES, Pipeline
from edgecam.sinks.jsonl import JsonlSink
from edgecam.sources.base import Source
from edgecam.sources.open import open_source
from edgecam.types import Frame, Result

WARMUP_INVOKES = 3


class Progress(Protocol):
    """Progress display (tqdm in the CLI): one bar per mode."""

    def start(self, mode: str, total: int) -> None: ...

    def advance(self) -> None: ...

    def finish(self) -> None: ...


class NoProgress:
    def start(self, mode: str, total: int) -> None:
        pass

    def advance(self) -> None:
        pass

    def finish(self) -> None:
        pass


@dataclass
class ModeResult:
    """One measured mode. stages_ms: stage -> mean/p50/p95; latency_ms: mean/p50/p95/p99.

    cpu_percent: process CPU over the mode's wall time (100 = one core busy);
    background_cpu_percent: what every other process used meanwhile — when it is high the
    threads competed for cores and the fps and ratios understate the pipeline.
    """

    mode: str
    frames: int
    elapsed_s: float
    fps: float
    cpu_percent: float
    peak_rss_mb: float
    background_cpu_percent: float = 0.0
    cpu_ms_per_frame: float = 0.0
    latency_ms: dict[str, float] = field(default_factory=dict)
    stages_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


class _Recorder:
    """Per-frame timings and latencies of a run, summarised over every frame (not a window)."""

    def __init__(self, progress: Progress) -> None:
        self.timings: dict[str, list[float]] = {stage: [] for stage in STAGES}
        self.latency: list[float] = []
        self.progress = progress

    def add(self, timings: dict[str, float], latency_ms: float) -> None:
        for stage, value in timings.items():
            self.timings.setdefault(stage, []).append(value)
        self.latency.append(latency_ms)
        self.progress.advance()

    def on_result(self, result: Result) -> None:
        self.add(result.timings_ms, (time.monotonic() - result.monotonic) * 1000)

    def stages(self) -> dict[str, dict[str, float]]:
        return {s: _describe(v, (50, 95)) for s, v in self.timings.items() if v}

    def latency_summary(self) -> dict[str, float]:
        return _describe(self.latency, (50, 95, 99)) if self.latency else {}


def _describe(values: list[float], qs: tuple[int, ...]) -> dict[str, float]:
    data = np.asarray(values, np.float64)
    out = {"mean": round(float(data.mean()), 3)}
    for q, v in zip(qs, np.percentile(data, qs), strict=True):
        out[f"p{q}"] = round(float(v), 3)
    return out


@dataclass(frozen=True)
class _Usage:
    elapsed: float
    cpu: float  # this process, % of one core
    background: float  # every other process, % of one core (noise indicator)
    peak: float


def _measure(
    mode: str, frames_hint: int, progress: Progress, body: Callable[[], Any]
) -> tuple[Any, _Usage]:
    """body() with this mode's wall time, CPU (own and others') and peak RSS."""
    reset_peak_rss()
    progress.start(mode, frames_hint)
    cpu = CpuMeter()
    busy = system_busy_s()
    start = time.perf_counter()
    try:
        value = body()
    finally:
        progress.finish()
    elapsed = time.perf_counter() - start
    own = cpu.cpu_seconds()
    after = system_busy_s()
    others = (after - busy - own) if busy is not None and after is not None else 0.0
    usage = _Usage(
        elapsed,
        round(100 * own / elapsed, 1),
        round(max(0.0, 100 * others / elapsed), 1),
        peak_rss_mb(),
    )
    return value, usage


def _mode(
    mode: str,
    frames: int,
    usage: _Usage,
    *,
    recorder: _Recorder | None = None,
    stages: dict[str, dict[str, float]] | None = None,
    extra: dict[str, Any] | None = None,
) -> ModeResult:
    return ModeResult(
        mode=mode,
        frames=frames,
        elapsed_s=round(usage.elapsed, 4),
        fps=round(frames / usage.elapsed, 2) if usage.elapsed > 0 else 0.0,
        cpu_percent=usage.cpu,
        background_cpu_percent=usage.background,
        peak_rss_mb=usage.peak,
        # CPU time is what background load distorts least: compare modes' efficiency with it.
        cpu_ms_per_frame=round(usage.cpu * usage.elapsed * 10 / frames, 3) if frames else 0.0,
        latency_ms=recorder.latency_summary() if recorder else {},
        stages_ms=stages if stages is not None else (recorder.stages() if recorder else {}),
        extra=extra or {},
    )


def _null_sink() -> JsonlSink:
    return JsonlSink(os.devnull, device_id="bench", every_frame=True, run_id="bench")


def bench_raw(engine: Engine, frame: Frame, frames: int, progress: Progress) -> ModeResult:
    """The interpreter alone on one prepared frame: the upper bound of any pipeline."""
    prepared = engine.prepare(frame)
    for _ in range(WARMUP_INVOKES):
        engine.infer(prepared)
    invokes: list[float] = []

    def body() -> None:
        for _ in range(frames):
            invokes.append(engine.infer(prepared)[1])
            progress.advance()

    _, usage = _measure("raw invoke", frames, progress, body)
    return _mode("raw", frames, usage, stages={"invoke": _describe(invokes, (50, 95))})


def bench_sequential(
    engine: Engine, open_src: Callable[[], Source], frames: int, progress: Progress
) -> ModeResult:
    """capture -> preprocess -> invoke -> postprocess -> output in one thread, like the examples."""
    recorder = _Recorder(progress)

    def body() -> int:
        count = 0
        with open_src() as source:
            sink = _null_sink()
            while count < frames:
                start = time.perf_counter()
                frame = source.read()
                capture_ms = (time.perf_counter() - start) * 1000
                if frame is None:
                    break
                result = engine.process(frame)
                start = time.perf_counter()
                sink.handle(result)
                output_ms = (time.perf_counter() - start) * 1000
                timings = {"capture": capture_ms, **result.timings_ms, "output": output_ms}
                recorder.add(timings, (time.monotonic() - frame.monotonic) * 1000)
                count += 1
            sink.close()
        return count

    count, usage = _measure("sequential", frames, progress, body)
    return _mode("sequential", count, usage, recorder=recorder)


def bench_pipeline(
    engine: Engine,
    open_src: Callable[[], Source],
    frames: int,
    progress: Progress,
    *,
    config: PipelineSection,
    mode: str = "pipeline",
    execution: AdaptiveExecution | None = None,
) -> ModeResult:
    """The edgecam pipeline, same source, same sink work; `execution` None: config.mode
    measured afresh (no cache)."""
    recorder = _Recorder(progress)

    def body() -> Any:
        with open_src() as source:
            sink = _null_sink()
            try:
                pipe = Pipeline(
                    source,
                    engine,
                    [sink],
                    config=config,
                    on_result=recorder.on_result,
                    execution=execution,
                )
                return pipe.run(max_frames=frames)
            finally:
                sink.close()

    summary, usage = _measure(mode, frames, progress, body)
    extra = {
        "frames_in": summary.frames_in,
        "dropped": summary.dropped,
        "motion_skipped": summary.motion_skipped,
        "input_fps": round(summary.frames_in / usage.elapsed, 2),
        "execution": summary.execution,
    }
    return _mode(mode, summary.processed, usage, recorder=recorder, extra=extra)


def measure_startup(section: ModelSection, spec: str) -> tuple[Engine, dict[str, Any]]:
    """Load the model, open the source and run to the first result, as `edgecam run` does."""
    start = time.monotonic()
    engine = open_engine(section)  # loading invoked it once, as in `edgecam run`
    loaded = time.monotonic()
    first: list[float] = []

    def on_result(result: Result) -> None:
        if not first:
            first.append(time.monotonic())
            age = process_age_s()
            first.append(age if age is not None else float("nan"))

    with open_source(spec, model_input=(engine.input_spec.width, engine.input_spec.height)) as src:
        Pipeline(src, engine, [_null_sink()], config=PipelineSection(), on_result=on_result).run(
            max_frames=1
        )
    if not first:
        raise SourceError(f"{spec}: delivered no frame, nothing to benchmark")
    return engine, {
        "model_load_s": round(loaded - start, 3),
        "to_first_result_s": round(first[0] - start, 3),
        "process_age_at_first_result_s": round(first[1], 3),
    }


def first_frame(open_src: Callable[[], Source]) -> Frame:
    with open_src() as source:
        frame = source.read()
    if frame is None:
        raise SourceError("the source delivered no frame, nothing to benchmark")
    return frame
