"""What everything around invoke costs, stage by stage, on a real result.

The per-frame path promises that building the result, the payload, the JSON, the write and
the pipeline's own books together stay within a few percent of one invoke. Each piece is
timed here on its own, many times, on a frame of the source that has detections (an empty
result would flatter the payload and JSON figures).
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgecam.config.pipeline import PipelineSection
from edgecam.core.payload import build_result_payload, encode_json
from edgecam.pipeline.arrangements import Arrangement
from edgecam.pipeline.engine import Engine
from edgecam.pipeline.flow import Segment, Stages
from edgecam.sources.base import Source
from edgecam.types import Frame, Result

ITERATIONS = 300
SEARCH_FRAMES = 300
#: The stats topic snapshot runs every stats.interval_s (default 10 s), not per frame.
STATS_INTERVAL_S = 10.0


class _Run:
    """Enough of a pipeline for Stages.deliver: never stops, never fails."""

    def __init__(self) -> None:
        self.stop_event = threading.Event()

    def fail(self, stage: str, exc: BaseException) -> None:
        raise exc

    def ended(self, reason: str) -> None:
        pass


def _us(body: Callable[[], Any], iterations: int = ITERATIONS) -> float:
    body()  # caches, first-call allocations
    start = time.perf_counter()
    for _ in range(iterations):
        body()
    return (time.perf_counter() - start) / iterations * 1e6


def _busy_frame(engine: Engine, source: Source) -> Frame:
    """The first frame with something in its result (or the last one read)."""
    last = None
    for _ in range(SEARCH_FRAMES):
        frame = source.read()
        if frame is None:
            break
        last = frame
        if len(engine.process(frame).output):
            return frame
    if last is None:
        raise ValueError("the source delivered no frame")
    return last


def around_invoke(engine: Engine, source: Source, invoke_ms: float) -> dict[str, Any]:
    """Microseconds per frame of each stage around invoke, and their share of invoke_ms."""
    frame = _busy_frame(engine, source)
    prepared = engine.prepare(frame)
    outputs, invoke = engine.infer(prepared)
    result: Result = engine.postprocess(prepared, outputs, invoke)
    payload = build_result_payload(result, device_id="bench", run_id="bench", seq=1)
    line = encode_json(payload) + b"\n"
    stages = Stages(source, engine, [], PipelineSection(), _Run(), on_result=None, on_progress=None)
    segment = Segment(Arrangement("sequential"), None)
    timings = dict(result.timings_ms)

    def deliver() -> None:
        result.timings_ms.clear()
        result.timings_ms.update(timings)
        stages.deliver(result, 0.1, segment)

    with (
        tempfile.TemporaryDirectory(prefix="edgecam-bench-") as tmp,
        Path(tmp, "out.jsonl").open("ab") as out,
    ):

        def write() -> None:
            out.write(line)
            out.flush()

        figures = {
            "postprocess": _us(lambda: engine.postprocess(prepared, outputs, invoke)),
            "payload": _us(lambda: build_result_payload(result, device_id="b", run_id="b", seq=1)),
            "json": _us(lambda: encode_json(payload)),
            "write": _us(write),
            "books": _us(deliver),
        }
    stats_us = _us(lambda: _stats_snapshot(stages), 50)
    fps = 1000.0 / invoke_ms if invoke_ms > 0 else 0.0
    figures["stats"] = stats_us / max(1.0, STATS_INTERVAL_S * fps)  # amortised per frame
    total = sum(figures.values())
    return {
        "detections": len(result.output),
        "us_per_frame": {k: round(v, 1) for k, v in figures.items()},
        "total_us": round(total, 1),
        "invoke_ms": round(invoke_ms, 3),
        "share_of_invoke": round(total / 1000 / invoke_ms, 4) if invoke_ms > 0 else None,
        "stats_snapshot_us": round(stats_us, 1),
    }


def _stats_snapshot(stages: Stages) -> dict[str, Any]:
    """What Pipeline.stats() computes from the books (percentiles over the windows)."""
    return {
        "stages": {name: book.summary() for name, book in stages.timings.items()},
        "latency": stages.latency.summary(),
        "fps": (stages.rate_in.rate(), stages.rate_out.rate()),
    }
