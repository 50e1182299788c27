"""Pipeline: channel semantics, ordering, drop policy, shutdown and error propagation, in both
arrangements (sequential: one thread; pipelined: capture, inference, output threads) and in
`auto`, where a run switches arrangements between segments while it calibrates.

The pipeline tests run the real video asset through the real engine (ai-edge-litert, one
interpreter thread). Faults are injected by thin wrappers around the real source, engine and
sink that raise the edgecam error a broken camera, interpreter or broker would raise. Every
test checks that no thread outlives run().
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgecam.config.model import ModelSection
from edgecam.config.pipeline import PipelineSection
from edgecam.errors import SinkError, SourceLost, TFLiteRuntimeError
from edgecam.pipeline.channels import BoundedQueue, LatestSlot
from edgecam.pipeline.engine import Engine, Prepared, open_engine
from edgecam.pipeline.pipeline import Pipeline, PipelineStats
from edgecam.sinks.jsonl import JsonlSink
from edgecam.sources import Source, SourceBase, open_source
from edgecam.sources.paced import PacedLive
from edgecam.types import Detections, Frame, Result

# -- channels ------------------------------------------------------------------------------


def _start(target: Any, *args: Any) -> tuple[threading.Thread, list[Any]]:
    """Run target(*args) in a thread; its return value lands in the list."""
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(target(*args)), daemon=True)
    thread.start()
    return thread, out


def test_bounded_queue_is_fifo_and_blocks_when_full() -> None:
    queue: BoundedQueue[int] = BoundedQueue(2)
    assert queue.put(1) and queue.put(2)
    thread, out = _start(queue.put, 3)
    thread.join(0.2)
    assert thread.is_alive() and queue.depth == 2  # back-pressure: the producer waits
    assert queue.get() == 1
    thread.join(5)
    assert out == [True]
    assert [queue.get(), queue.get()] == [2, 3]
    assert queue.dropped == 0


def test_bounded_queue_close_wakes_blocked_put_and_get() -> None:
    full: BoundedQueue[int] = BoundedQueue(1)
    full.put(1)
    putter, put_result = _start(full.put, 2)
    empty: BoundedQueue[int] = BoundedQueue(1)
    getter, get_result = _start(empty.get)
    putter.join(0.1)
    getter.join(0.1)
    assert putter.is_alive() and getter.is_alive()
    full.close()
    empty.close()
    putter.join(5)
    getter.join(5)
    assert put_result == [False]  # refused, not queued
    assert get_result == [None]  # closed and empty
    assert full.get() == 1 and full.get() is None  # closing keeps what was queued
    assert not full.put(3)


def test_bounded_queue_close_with_discard_forgets_queued_items() -> None:
    queue: BoundedQueue[int] = BoundedQueue(4)
    for i in range(3):
        queue.put(i)
    assert queue.close(discard=True) == 3
    assert queue.get() is None and queue.depth == 0


def test_latest_slot_keeps_only_the_newest_and_counts_drops() -> None:
    slot: LatestSlot[int] = LatestSlot()
    for i in range(5):
        assert slot.put(i)  # never blocks
    assert slot.dropped == 4 and slot.depth == 1
    assert slot.get() == 4
    getter, out = _start(slot.get)
    getter.join(0.1)
    assert getter.is_alive()  # empty: the consumer waits for a frame
    slot.put(7)
    getter.join(5)
    assert out == [7] and slot.dropped == 4


def test_latest_slot_close_semantics() -> None:
    slot: LatestSlot[int] = LatestSlot()
    slot.put(1)
    slot.close()
    assert not slot.put(2)  # refused after close, not counted as a drop
    assert slot.dropped == 0
    assert slot.get() == 1 and slot.get() is None


def test_channel_sizes_are_validated() -> None:
    with pytest.raises(ValueError, match="maxsize"):
        BoundedQueue(0)


# -- pipeline fixtures ---------------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_thread_leaks() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    leaked = [t.name for t in threading.enumerate() if t not in before and t.is_alive()]
    assert leaked == [], f"threads left running: {leaked}"


@pytest.fixture(scope="module")
def detector(asset_models: Path) -> Engine:
    engine = open_engine(
        ModelSection(name="ssd_mobilenet_v1", models_dir=asset_models, runtime="litert", threads=1)
    )
    engine.warm_up()
    return engine


@pytest.fixture(scope="module")
def classifier(asset_models: Path) -> Engine:
    engine = open_engine(
        ModelSection(name="mobilenet_v2", models_dir=asset_models, runtime="litert", threads=1)
    )
    engine.warm_up()
    return engine


@pytest.fixture(params=["sequential", "pipelined"])
def mode(request: pytest.FixtureRequest) -> PipelineSection:
    """Both fixed arrangements (behaviour must not depend on which one runs)."""
    return PipelineSection(mode=request.param)


@pytest.fixture()
def video(asset_video: Path) -> Iterator[Source]:
    source = open_source(str(asset_video))
    yield source
    source.close()


class Collect:
    """A sink keeping what it was given (results, in order)."""

    def __init__(self) -> None:
        self.results: list[Result] = []
        self.closed = False

    def handle(self, result: Result) -> None:
        self.results.append(result)

    def close(self, timeout: float = 0.0) -> None:
        self.closed = True


class LosesCamera(SourceBase):
    """The real source, until the camera is 'unplugged' after `after` frames."""

    def __init__(self, source: Source, after: int, *, live: bool = False) -> None:
        super().__init__(source.name)
        self._source, self._after, self.live = source, after, live
        self.fps = source.fps

    def read(self) -> Frame | None:
        if self._after == 0:
            raise SourceLost(f"{self.name}: no frame for 5 s after 3 reconnect attempts")
        self._after -= 1
        return self._source.read()

    def _release(self) -> None:
        self._source.close()


class AsLive(LosesCamera):
    """The real video, flagged live and read as fast as it decodes (faster than inference)."""

    def __init__(self, source: Source) -> None:
        super().__init__(source, after=-1, live=True)


class InterpreterDies:
    """The real engine, whose invoke fails at frame number `at`."""

    def __init__(self, engine: Engine, at: int) -> None:
        self._engine, self._at, self._count = engine, at, 0

    def prepare(self, frame: Frame, pixel_width: int | None = None) -> Any:
        return self._engine.prepare(frame, pixel_width)

    def infer(self, prepared: Any) -> tuple[Any, float]:
        self._count += 1
        if self._count > self._at:
            raise TFLiteRuntimeError("model.tflite: litert invoke failed: tensor data corrupted")
        return self._engine.infer(prepared)

    def postprocess(self, prepared: Any, outputs: Any, invoke_ms: float) -> Result:
        return self._engine.postprocess(prepared, outputs, invoke_ms)


class BrokerRefuses(Collect):
    def handle(self, result: Result) -> None:
        if len(self.results) == 3:
            raise SinkError("mqtt 127.0.0.1:1883: not authorised (check username/password)")
        super().handle(result)


def _same_output(a: Result, b: Result) -> bool:
    oa, ob = a.output, b.output
    if isinstance(oa, Detections) and isinstance(ob, Detections):
        return (
            oa.label == ob.label
            and np.array_equal(oa.class_id, ob.class_id)
            and np.array_equal(oa.score, ob.score)
            and np.array_equal(oa.xyxy, ob.xyxy)
        )
    return (
        oa.label == ob.label
        and np.array_equal(oa.class_id, ob.class_id)
        and np.array_equal(oa.score, ob.score)
    )


# -- ordering and identity with the sequential path ------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(("model", "frames"), [("detector", 300), ("classifier", 60)])
def test_replay_gives_one_identical_result_per_frame_in_order(
    request: pytest.FixtureRequest, asset_video: Path, model: str, frames: int, tmp_path: Path
) -> None:
    engine: Engine = request.getfixturevalue(model)
    with open_source(str(asset_video)) as source:
        expected = []
        for _ in range(frames):
            frame = source.read()
            assert frame is not None
            expected.append(engine.process(frame))
    collect = Collect()
    seen: list[Result] = []
    jsonl = JsonlSink(str(tmp_path / "out.jsonl"), device_id="test")
    with open_source(str(asset_video)) as source:
        summary = Pipeline(
            source, engine, [collect, jsonl], config=PipelineSection(), on_result=seen.append
        ).run(max_frames=frames)
    jsonl.close()
    assert summary.reason == "max_frames"
    assert (summary.frames_in, summary.processed, summary.dropped) == (frames, frames, 0)
    assert [r.seq for r in collect.results] == list(range(frames))
    assert all(_same_output(got, want) for got, want in zip(collect.results, expected, strict=True))
    if model == "detector":  # the video shows people: the comparison is not all-empty
        assert sum(len(r.output) for r in expected) > frames // 2
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == frames
    # auto measured on this run's own frames (a short run may end before it decided):
    # several arrangements ran, and none lost or reordered a frame.
    assert summary.execution["chosen_by"] in ("calibration", "calibrating")
    # on_result sees every result, with the pipeline's own stage timings added.
    assert [r.seq for r in seen] == list(range(frames))
    assert set(seen[0].timings_ms) == {"capture", "preprocess", "invoke", "postprocess", "output"}


class RecordsPrepareThread:
    """The real engine, recording which thread ran prepare(); `detached` mirrors the engine's
    ``prepare_detached`` flag (True for edgecam.pipeline.engine.Engine) or hides it."""

    def __init__(self, engine: Engine, *, detached: bool) -> None:
        self._engine = engine
        self.prepare_detached = detached
        self.prepare_threads: set[str] = set()

    def prepare(self, frame: Frame, pixel_width: int | None = None) -> Prepared:
        self.prepare_threads.add(threading.current_thread().name)
        return self._engine.prepare(frame, pixel_width)

    def infer(self, prepared: Prepared) -> tuple[Any, float]:
        return self._engine.infer(prepared)

    def postprocess(self, prepared: Prepared, outputs: Any, invoke_ms: float) -> Result:
        return self._engine.postprocess(prepared, outputs, invoke_ms)


@pytest.mark.parametrize(
    ("mode", "detached", "thread"),
    [
        ("pipelined", True, "edgecam-capture"),
        ("pipelined", False, "edgecam-inference"),
        ("sequential", True, "edgecam-sequential"),
    ],
    indirect=["mode"],
)
def test_prepare_runs_where_the_engine_allows_with_identical_results(
    detector: Engine, asset_video: Path, mode: PipelineSection, detached: bool, thread: str
) -> None:
    assert detector.prepare_detached  # the real engine preprocesses off the interpreter thread
    frames = 40
    with open_source(str(asset_video)) as source:
        expected = [detector.process(f) for f in itertools.islice(iter(source.read, None), frames)]
    engine = RecordsPrepareThread(detector, detached=detached)
    collect = Collect()
    with open_source(str(asset_video)) as source:
        Pipeline(source, engine, [collect], config=mode).run(max_frames=frames)
    assert engine.prepare_threads == {thread}
    assert [r.seq for r in collect.results] == list(range(frames))
    assert all(_same_output(got, want) for got, want in zip(collect.results, expected, strict=True))


def test_replay_to_the_end_of_a_short_source(detector: Engine, asset_images: Path) -> None:
    collect = Collect()
    with open_source(str(asset_images / "pets.jpg")) as source:
        summary = Pipeline(source, detector, [collect], config=PipelineSection()).run()
    assert summary.reason == "end"
    assert [r.seq for r in collect.results] == [0]
    assert "dog" in collect.results[0].output.label
    assert summary.first_result_s is not None and summary.elapsed_s >= summary.first_result_s


def test_live_source_drops_stale_frames_and_keeps_order(
    detector: Engine, asset_video: Path
) -> None:
    collect = Collect()
    with open_source(str(asset_video), loop=True) as looped:  # a camera does not end
        config = PipelineSection(mode="pipelined")  # one thread reading cannot drop
        pipeline = Pipeline(AsLive(looped), detector, [collect], config=config)
        summary = pipeline.run(max_frames=40)
    seqs = [r.seq for r in collect.results]
    assert summary.processed == len(seqs) == 40
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    # Decoding outruns inference here, so stale frames were replaced, and every frame
    # read is accounted for: processed, dropped, or cut off by the stop.
    assert summary.dropped > 0 and seqs[-1] >= 40
    assert summary.frames_in == summary.processed + summary.dropped + summary.discarded


# -- stopping ------------------------------------------------------------------------------


def test_stop_event_mid_run_stops_all_threads(
    detector: Engine, video: Source, mode: PipelineSection
) -> None:
    stop = threading.Event()
    collect = Collect()

    def on_result(result: Result) -> None:
        if result.seq == 9:
            stop.set()

    pipeline = Pipeline(video, detector, [collect], config=mode, on_result=on_result)
    summary = pipeline.run(stop=stop)
    assert summary.reason == "stopped"
    # Results computed before the stop are still delivered, in order; nothing is dropped.
    assert [r.seq for r in collect.results] == list(range(summary.processed))
    assert summary.processed >= 10 and summary.dropped == 0
    assert pipeline.first_result.is_set()


def test_stop_from_another_thread(detector: Engine, video: Source, mode: PipelineSection) -> None:
    holder: list[Pipeline] = []

    def on_result(result: Result) -> None:
        if result.seq == 4:
            threading.Thread(target=holder[0].stop).start()

    pipeline = Pipeline(video, detector, [], config=mode, on_result=on_result)
    holder.append(pipeline)
    summary = pipeline.run()
    assert summary.reason == "stopped" and summary.processed >= 5


def test_sigint_in_caller_stops_threads_and_propagates(
    detector: Engine, video: Source, mode: PipelineSection
) -> None:
    main = threading.main_thread().ident
    assert main == threading.get_ident()

    def on_result(result: Result) -> None:
        if result.seq == 3 and main is not None:
            signal.pthread_kill(main, signal.SIGINT)

    pipeline = Pipeline(video, detector, [], config=mode, on_result=on_result)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run()
    assert os.getpid() > 0  # still here: the interrupt ended run(), not the process


def test_stop_while_capture_is_blocked_closes_the_source(
    detector: Engine, video: Source, mode: PipelineSection
) -> None:
    # A camera delivering one frame every 20 s: after the first result the capture thread
    # sits in read(). The stop must not wait for the next frame: past half the deadline the
    # pipeline closes the source, which (per the Source contract) makes read() return None.
    camera = PacedLive(video, fps=0.05)
    config = mode.model_copy(update={"stop_timeout_s": 1.0})
    pipeline = Pipeline(camera, detector, [], config=config)

    def stop_after_first_result() -> None:
        if pipeline.first_result.wait(60):
            pipeline.stop()

    stopper = threading.Thread(target=stop_after_first_result)
    stopper.start()
    summary = pipeline.run()
    stopper.join()
    assert summary.reason == "stopped" and summary.processed == 1
    assert camera.read() is None  # closed by the pipeline


def test_run_twice_is_refused(detector: Engine, asset_images: Path) -> None:
    with open_source(str(asset_images / "pets.jpg")) as source:
        pipeline = Pipeline(source, detector, [], config=PipelineSection())
        pipeline.run()
        with pytest.raises(RuntimeError, match="once"):
            pipeline.run()


# -- errors in each stage ------------------------------------------------------------------


@pytest.mark.parametrize("live", [False, True])
def test_capture_error_is_reraised_with_its_class_and_message(
    detector: Engine, video: Source, live: bool, mode: PipelineSection
) -> None:
    collect = Collect()
    source = LosesCamera(video, after=6, live=live)
    with pytest.raises(SourceLost, match="no frame for 5 s after 3 reconnect attempts"):
        Pipeline(source, detector, [collect], config=mode).run()
    assert len(collect.results) <= 6


def test_inference_error_is_reraised(
    detector: Engine, video: Source, mode: PipelineSection
) -> None:
    collect = Collect()
    engine = InterpreterDies(detector, at=5)
    with pytest.raises(TFLiteRuntimeError, match="invoke failed: tensor data corrupted"):
        Pipeline(video, engine, [collect], config=mode).run()
    assert [r.seq for r in collect.results] == list(range(len(collect.results)))
    assert len(collect.results) <= 5


def test_output_error_is_reraised(detector: Engine, video: Source, mode: PipelineSection) -> None:
    sink = BrokerRefuses()
    with pytest.raises(SinkError, match="not authorised"):
        Pipeline(video, detector, [sink], config=mode).run()
    assert len(sink.results) == 3


def test_error_in_progress_callback_is_reraised(
    detector: Engine, video: Source, mode: PipelineSection
) -> None:
    def on_progress(stats: PipelineStats) -> None:
        raise ValueError("watchdog socket gone")

    pipeline = Pipeline(video, detector, [], config=mode, on_progress=on_progress)
    with pytest.raises(ValueError, match="watchdog socket gone"):
        pipeline.run()


# -- progress, stats, motion ---------------------------------------------------------------


def test_progress_is_rate_limited_and_monotonic(
    detector: Engine, video: Source, asset_video: Path
) -> None:
    calls: list[PipelineStats] = []
    config = PipelineSection(progress_interval_s=60)
    Pipeline(video, detector, [], config=config, on_progress=calls.append).run(max_frames=10)
    assert len(calls) == 1 and calls[0].processed == 1  # the first result, then rate-limited

    calls.clear()
    fast = PipelineSection(progress_interval_s=1e-9)
    with open_source(str(asset_video)) as again:
        Pipeline(again, detector, [], config=fast, on_progress=calls.append).run(max_frames=10)
    assert [c.processed for c in calls] == list(range(1, 11))
    assert all(a.uptime_s <= b.uptime_s for a, b in itertools.pairwise(calls))


def test_stats_snapshot_has_everything_the_stats_topic_needs(
    detector: Engine, video: Source
) -> None:
    pipeline = Pipeline(video, detector, [], config=PipelineSection())
    summary = pipeline.run(max_frames=20)
    stats = pipeline.stats()
    assert (stats["frames_in"], stats["processed"], stats["dropped"]) == (20, 20, 0)
    assert stats["fps_out"] > 0 and stats["fps_in"] > 0
    assert set(stats["stages_ms"]) == {"capture", "preprocess", "invoke", "postprocess", "output"}
    invoke = stats["stages_ms"]["invoke"]
    assert 0 < invoke["p50"] <= invoke["p95"]
    assert stats["latency_ms"]["p50"] >= invoke["p50"]  # latency contains the invoke
    assert stats["rss_mb"] > 0 and stats["cpu_percent"] >= 0
    assert summary.peak_rss_mb >= stats["rss_mb"] * 0.5
    assert summary.as_dict()["fps"] == round(summary.fps, 2) > 0
    assert json.loads(json.dumps(stats)) == stats  # publishable as the MQTT stats payload
    execution = stats["execution"]  # what adaptive execution chose, and why
    assert execution["mode"] in ("sequential", "pipelined") and execution["threads"] == 1
    assert execution["candidates"] == ["sequential/1", "pipelined/1"]  # --threads 1 pinned


class Repeats(SourceBase):
    """A replay of one real frame, `count` times: a perfectly static scene."""

    def __init__(self, source: Source, count: int) -> None:
        super().__init__(source.name)
        first = source.read()
        assert first is not None
        self._first, self._left, self.frame_count = first, count, count

    def read(self) -> Frame | None:
        if self._left == 0:
            return None
        self._left -= 1
        return self._frame(self._first.pixels, self._first.pixel_format)

    def _release(self) -> None:
        self._left = 0


def test_motion_gate_skips_a_static_scene_but_reports_progress(
    detector: Engine, video: Source
) -> None:
    calls: list[PipelineStats] = []
    collect = Collect()
    config = PipelineSection(motion=True, motion_refresh_s=3600, progress_interval_s=1e-9)
    summary = Pipeline(
        Repeats(video, 30), detector, [collect], config=config, on_progress=calls.append
    ).run()
    assert summary.reason == "end"
    assert (summary.frames_in, summary.processed, summary.motion_skipped) == (30, 1, 29)
    assert [r.seq for r in collect.results] == [0]
    # Skipped frames still count as progress (the watchdog must not fire on a quiet scene).
    assert calls and calls[-1].motion_skipped > 0


def test_motion_gate_lets_a_moving_scene_through(detector: Engine, video: Source) -> None:
    config = PipelineSection(motion=True, motion_refresh_s=3600)
    # Skip to where people walk through the picture.
    for _ in range(130):
        video.read()
    summary = Pipeline(video, detector, [], config=config).run(max_frames=20)
    assert summary.processed == 20
    assert summary.frames_in >= 20


class Blind(Collect):
    """A sink that says it never looks at pixels (like the JSON-lines sink)."""

    needs_pixels = False


def test_pixels_are_dropped_once_prepared_only_when_no_sink_reads_them(
    detector: Engine, asset_video: Path, mode: PipelineSection
) -> None:
    blind, seeing = Blind(), Collect()
    with open_source(str(asset_video)) as source:
        Pipeline(source, detector, [blind], config=mode).run(max_frames=5)
    with open_source(str(asset_video)) as source:
        Pipeline(source, detector, [seeing], config=mode).run(max_frames=5)
    for light, full in zip(blind.results, seeing.results, strict=True):
        assert light.frame is not None and full.frame is not None
        assert light.frame.pixels.size == 0 and full.frame.pixels.shape == (432, 768, 3)
        # the same frame size and the same boxes either way
        assert (light.width, light.height) == (full.width, full.height) == (768, 432)
        assert _same_output(light, full)
