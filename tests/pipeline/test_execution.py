"""Adaptive execution: the arrangement a run uses is the one measured fastest, and pins win.

Selection is tested on runs where one arrangement is clearly faster by construction, never on
timings: a source made expensive to decode (a capture thread hides it behind inference) against
a cheap one with an engine whose invoke slows down when a frame is decoded at the same time
(what XNNPACK's workers suffer when a capture thread takes their core), so running everything
in one thread wins. The cost model sleeps (releasing the GIL), so the outcome does not depend
on how busy the machine is. The real detector and video cover the real engine's thread switch.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgecam.config.model import ModelSection
from edgecam.config.pipeline import PipelineSection
from edgecam.doctor.execution import cached_choices, check_execution
from edgecam.pipeline.arrangements import (
    Arrangement,
    Budget,
    Trial,
    camera_rate,
    candidates,
    pick,
    usable_cores,
)
from edgecam.pipeline.engine import Engine, open_engine
from edgecam.pipeline.execution import AdaptiveExecution, execution_for
from edgecam.pipeline.pipeline import Pipeline
from edgecam.runtime.cache import ChoiceCache
from edgecam.sources.base import SourceBase
from edgecam.sources.open import open_source
from edgecam.types import Detections, Frame, Result

QUICK = Budget(warmup=2, min_frames=4, min_s=0.15, max_s=0.6)
SEQ, PIPE = Arrangement("sequential"), Arrangement("pipelined")


def _trial(
    arrangement: Arrangement, fps: float, latency: float = 50.0, input_fps: float = 0.0
) -> Trial:
    return Trial(arrangement, 10, 10 / fps, fps, input_fps or fps, latency, {"invoke": 20.0})


# -- the decision rules ------------------------------------------------------------------------


def test_pick_takes_the_fastest_and_breaks_near_ties_on_latency() -> None:
    assert pick([_trial(SEQ, 40), _trial(PIPE, 50)], live=False).arrangement == PIPE
    # 1 % apart is noise on a shared machine: the lower latency wins
    close = [_trial(SEQ, 50, latency=30), _trial(PIPE, 50.5, latency=200)]
    assert pick(close, live=False).arrangement == SEQ


def test_live_sequential_must_keep_up_with_the_camera() -> None:
    # The camera delivered 30 fps to the capture thread; one thread doing everything managed
    # 25: it would read stale buffered frames, so it is out even with a lower latency.
    trials = [_trial(SEQ, 25, latency=20), _trial(PIPE, 24.8, latency=60, input_fps=30)]
    assert pick(trials, live=True).arrangement == PIPE
    assert pick(trials, live=False).arrangement == SEQ
    # Both keep up with a 10 fps camera: more throughput is worth nothing, latency decides.
    paced = [_trial(SEQ, 10.0, latency=25, input_fps=10.0), _trial(PIPE, 10.4, latency=40)]
    assert pick(paced, live=True).arrangement == SEQ


def test_a_burst_of_buffered_frames_does_not_make_the_camera_look_faster() -> None:
    """Measured on a paced 10 fps source: two pipelined segments saw 10.4 and 11.2 fps come
    in (the second started with a burst of buffered frames). Every arrangement kept up with
    the real 10 fps; the one with the lowest latency must win, not the pipeline by default."""
    seq2, pipe2, pipe1 = (
        Arrangement("sequential", 2),
        Arrangement("pipelined", 2),
        Arrangement("pipelined", 1),
    )
    trials = [
        _trial(seq2, 10.05, latency=19.1, input_fps=10.61),
        _trial(pipe2, 9.99, latency=21.7, input_fps=11.16),
        _trial(pipe1, 9.98, latency=30.6, input_fps=10.41),
    ]
    assert camera_rate(trials) == 10.41
    assert pick(trials, live=True).arrangement == seq2
    # A camera really faster than one thread can follow still rules sequential out.
    fast = [
        _trial(seq2, 20.0, latency=19, input_fps=20.0),
        *(_trial(a, 29.5, latency=40, input_fps=30.0) for a in (pipe2, pipe1)),
    ]
    assert pick(fast, live=True).arrangement == pipe2


@pytest.mark.parametrize(
    ("mode", "threads", "cores", "switchable", "expected"),
    [
        # auto, free threads, 4 cores: sequential on all cores, pipelined on all or one fewer
        ("auto", None, 4, True, ["sequential/4", "pipelined/4", "pipelined/3"]),
        ("auto", None, 1, True, ["sequential/1", "pipelined/1"]),
        ("auto", 2, 4, True, ["sequential/2", "pipelined/2"]),  # --threads 2 pins the count
        ("sequential", None, 4, True, ["sequential/4"]),  # pipeline.mode pins the mode
        ("pipelined", None, 2, True, ["pipelined/2", "pipelined/1"]),
        ("pipelined", 1, 2, True, ["pipelined/1"]),  # both pinned: nothing to measure
        ("auto", None, 4, False, ["sequential", "pipelined"]),  # engine cannot switch threads
    ],
)
def test_candidates_honour_the_pins(
    mode: Any, threads: int | None, cores: int, switchable: bool, expected: list[str]
) -> None:
    assert [a.label for a in candidates(mode, threads, cores, switchable)] == expected


def test_calibration_decides_caches_and_the_next_start_reuses_it(tmp_path: Path) -> None:
    cache = ChoiceCache(tmp_path)
    arrangements = [Arrangement("sequential", 2), Arrangement("pipelined", 2)]
    first = AdaptiveExecution(arrangements, key="model", cache=cache)
    step = first.start("video:768x432", live=False, current_threads=2)
    measured = {"sequential/2": 30.0, "pipelined/2": 45.0}
    while step.budget is not None:
        fps = measured[step.arrangement.label]
        step = first.after(step.arrangement, "budget", _trial(step.arrangement, fps))
    assert step.arrangement == Arrangement("pipelined", 2) and first.chosen_by == "calibration"
    assert [t.arrangement.label for t in first.figures] == ["pipelined/2", "sequential/2"]

    again = AdaptiveExecution(arrangements, key="model", cache=cache)
    step = again.start("video:768x432", live=False, current_threads=2)
    assert step == type(step)(Arrangement("pipelined", 2)) and again.chosen_by == "cache"
    assert again.report()["trials"][0]["arrangement"] == "pipelined/2"
    # another kind of source is measured on its own
    other = AdaptiveExecution(arrangements, key="model", cache=cache)
    assert other.start("video:1920x1080:MJPG", live=False).budget is not None


def test_drift_asks_for_a_recheck_only_when_it_persists() -> None:
    ex = AdaptiveExecution([SEQ, PIPE], recheck_s=1.0)
    step = ex.start("video:768x432", live=False)
    while step.budget is not None:
        step = ex.after(step.arrangement, "budget", _trial(step.arrangement, 40.0))
    steady = {"invoke": 20.0}
    assert not ex.drifted(steady)
    decode_got_expensive = {"invoke": 20.0, "capture": 15.0}
    ex.reference["capture"] = 1.0
    assert not ex.drifted(decode_got_expensive)  # once could be a hiccup
    assert ex.drifted(decode_got_expensive)  # twice in a row: measure again
    assert ex.after(step.arrangement, "recheck", None).budget is not None
    assert ex.rechecks == 1


# -- whole runs where one arrangement is clearly faster ---------------------------------------


class Decoder(SourceBase):
    """A replay whose read() costs `decode_s` (a sleep: like a decoder it leaves the GIL)."""

    def __init__(self, frames: int, decode_s: float) -> None:
        super().__init__("video:synthetic")
        self._left, self.decode_s = frames, decode_s
        self.decoding = 0  # reads in progress (the engine's contention model looks at it)
        self.reads = 0
        self._pixels = np.zeros((48, 64, 3), np.uint8)

    def read(self) -> Frame | None:
        if self._left == 0:
            return None
        self._left -= 1
        self.reads += 1
        self.decoding += 1
        time.sleep(self.decode_s)
        self.decoding -= 1
        return self._frame(self._pixels, "BGR")


class Contended:
    """An engine whose invoke takes `invoke_s`, plus `penalty_s` when a frame was decoded
    while it ran (the capture thread stealing the interpreter's core)."""

    def __init__(self, source: Decoder, invoke_s: float, penalty_s: float) -> None:
        self.source, self.invoke_s, self.penalty_s = source, invoke_s, penalty_s
        self.threads_seen: set[str] = set()

    def prepare(self, frame: Frame, pixel_width: int | None = None) -> Frame:
        return frame

    def infer(self, prepared: Frame) -> tuple[Any, float]:
        self.threads_seen.add(threading.current_thread().name)
        start, reads = time.perf_counter(), self.source.reads
        time.sleep(self.invoke_s)
        # any decoding during this invoke, however late the capture thread got to it
        if self.source.decoding > 0 or self.source.reads != reads:
            time.sleep(self.penalty_s)
        return None, (time.perf_counter() - start) * 1000

    def postprocess(self, prepared: Frame, outputs: Any, invoke_ms: float) -> Result:
        return Result(
            prepared.seq,
            prepared.timestamp,
            prepared.monotonic,
            "fake",
            64,
            48,
            Detections.empty(),
            {"preprocess": 0.0, "invoke": invoke_ms, "postprocess": 0.0},
        )


def _run(source: Decoder, engine: Contended, frames: int) -> tuple[list[int], dict[str, Any]]:
    seqs: list[int] = []
    execution = AdaptiveExecution([SEQ, PIPE], budget=QUICK)
    pipeline = Pipeline(
        source,
        engine,
        [],
        config=PipelineSection(),
        on_result=lambda r: seqs.append(r.seq),
        execution=execution,
    )
    summary = pipeline.run(max_frames=frames)
    return seqs, summary.execution


@pytest.mark.slow
def test_expensive_decoding_is_hidden_behind_inference() -> None:
    # sequential: 30 + 20 ms a frame; pipelined: max(30, 20 + contention) = 30-35 ms
    source = Decoder(frames=80, decode_s=0.030)
    engine = Contended(source, invoke_s=0.020, penalty_s=0.005)
    seqs, execution = _run(source, engine, 80)
    assert execution["mode"] == "pipelined" and execution["chosen_by"] == "calibration"
    assert seqs == list(range(80))  # every frame, in order, across the arrangement switches


@pytest.mark.slow
def test_cheap_decoding_with_contention_runs_in_one_thread() -> None:
    # sequential: 2 + 20 ms a frame; pipelined: decoding overlaps invoke, 20 + 25 ms a frame
    source = Decoder(frames=80, decode_s=0.002)
    engine = Contended(source, invoke_s=0.020, penalty_s=0.025)
    seqs, execution = _run(source, engine, 80)
    assert execution["mode"] == "sequential" and execution["chosen_by"] == "calibration"
    assert seqs == list(range(80))
    trials = {t["arrangement"]: t["fps"] for t in execution["trials"]}
    assert trials["sequential"] > trials["pipelined"]


# -- the real engine -----------------------------------------------------------------------------


@pytest.fixture()
def free_detector(asset_models: Path) -> Iterator[Engine]:
    """The real detector with its thread count left to adaptive execution."""
    engine = open_engine(ModelSection(name="ssd_mobilenet_v1", models_dir=asset_models))
    engine.warm_up()
    yield engine


class SlowDecode(SourceBase):
    """The real video, each read made `extra_s` more expensive (a 4K H.264 stream's decode)."""

    def __init__(self, path: Path, extra_s: float) -> None:
        super().__init__("video:slow")
        self._source, self.extra_s = open_source(str(path)), extra_s

    def read(self) -> Frame | None:
        time.sleep(self.extra_s)
        return self._source.read()

    def _release(self) -> None:
        self._source.close()


@pytest.mark.slow
def test_real_detector_on_an_expensive_source_is_pipelined_and_switches_threads(
    free_detector: Engine, asset_video: Path, tmp_path: Path
) -> None:
    prepared = free_detector.prepare(_frame(asset_video))
    invoke = float(np.median([free_detector.infer(prepared)[1] for _ in range(5)]))
    cache = ChoiceCache(tmp_path)
    execution = execution_for(free_detector, PipelineSection(), cache)
    execution.budget = QUICK
    cores = usable_cores()
    expected = [f"sequential/{cores}", f"pipelined/{cores}"]
    expected += [f"pipelined/{cores - 1}"] if cores > 1 else []
    assert [a.label for a in execution.arrangements] == expected
    with SlowDecode(asset_video, extra_s=3 * invoke / 1000) as source:
        summary = Pipeline(
            source, free_detector, [], config=PipelineSection(), execution=execution
        ).run(max_frames=60)
    report = summary.execution
    assert report["mode"] == "pipelined" and report["chosen_by"] == "calibration"
    # every candidate ran on real frames, each with its own interpreter thread count
    assert {t["arrangement"] for t in report["trials"]} == set(expected)
    assert free_detector.threads == report["threads"]
    # what doctor shows afterwards
    entries = cached_choices(tmp_path, free_detector.runner.model_path)
    assert [e["arrangement"] for e in entries] == [f"pipelined/{report['threads']}"]
    check = check_execution(entries, "auto", None)
    assert check.status == "ok" and "video:" in check.detail and "pipelined" in check.detail


def _frame(path: Path) -> Frame:
    with open_source(str(path)) as source:
        frame = source.read()
    assert frame is not None
    return frame


def test_pinned_mode_and_threads_are_honoured(asset_models: Path, asset_video: Path) -> None:
    engine = open_engine(ModelSection(name="ssd_mobilenet_v1", models_dir=asset_models, threads=1))
    config = PipelineSection(mode="sequential")
    with open_source(str(asset_video)) as source:
        summary = Pipeline(source, engine, [], config=config).run(max_frames=5)
    assert summary.execution["mode"] == "sequential" and summary.execution["threads"] == 1
    assert summary.execution["chosen_by"] == "config" and summary.execution["trials"] == []
    assert engine.threads == 1 and summary.processed == 5


def test_doctor_says_the_first_run_measures(tmp_path: Path, asset_models: Path) -> None:
    model = asset_models / "coco_ssd_mobilenet_v1_1.0_quant_2018_06_29.tflite"
    assert cached_choices(tmp_path, model) == []
    check = check_execution([], "pipelined", 2)
    assert check.status == "ok"
    assert "pipeline.mode = pipelined" in check.detail and "model.threads = 2" in check.detail
    assert "first `edgecam run` measures" in check.detail
    assert os.cpu_count()


def test_a_cached_choice_is_checked_early_against_this_run(tmp_path: Path) -> None:
    """Cached figures come from another time (other load, another scene): the first two
    checks come after a few seconds, and a drift then measures again at once."""
    cache = ChoiceCache(tmp_path)
    first = AdaptiveExecution([SEQ, PIPE], cache=cache)
    step = first.start("video:768x432", live=False)
    while step.budget is not None:
        step = first.after(step.arrangement, "budget", _trial(step.arrangement, 40.0))
    assert first.next_check_s() == 60.0  # measured now: the regular interval
    again = AdaptiveExecution([SEQ, PIPE], cache=cache)
    again.start("video:768x432", live=False)
    assert again.chosen_by == "cache" and again.next_check_s() == 3.0
    quieter = {"invoke": 8.0}  # the cached calibration saw 20 ms invokes
    assert not again.drifted(quieter)
    assert again.drifted(quieter)
    assert again.next_check_s() == 60.0
