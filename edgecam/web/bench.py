"""`edgecam bench --web`: what the page costs the pipeline, with nobody and with one viewer.

Three modes on the same engine and source, in interleaved rounds (the order rotates, so slow
drifts of a shared machine hit every mode alike): the pipeline with the sinks `run` uses for
events (JSON lines to /dev/null + the tracker), the same plus the web sink and server with no
client, and the same with one viewer process asking what an open Live tab asks
(edgecam.web.viewer). A replay source runs flat out, so any cost shows as lost fps. Reported
per mode: median fps and CPU ms per frame, and two costs against "no web", each the median
over the rounds' pairs: fps lost, and extra CPU per frame. The verdict uses the CPU cost: the
pipeline is CPU-bound on the boards edgecam targets (extra CPU per frame is lost fps there),
and CPU time is what other processes distort least, while fps on a shared machine swings
with their load (it did, by ±50 %, on the machine the README's numbers come from).
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from edgecam import __version__
from edgecam.config.events import EventsSection
from edgecam.config.model import ModelSection
from edgecam.config.objects import ObjectsSection
from edgecam.config.pipeline import PipelineSection
from edgecam.config.tracking import TrackingSection
from edgecam.config.web import WebSection
from edgecam.pipeline.engine import Engine, open_engine
from edgecam.pipeline.metrics import CpuMeter, system_busy_s
from edgecam.pipeline.pipeline import Pipeline
from edgecam.sinks.base import Sink
from edgecam.sinks.events import EventsSink, build_event_engine
from edgecam.sinks.jsonl import JsonlSink
from edgecam.sources.base import Source
from edgecam.sources.open import open_source
from edgecam.web.app import serve
from edgecam.web.health import RunInfo
from edgecam.web.server import WebServer
from edgecam.web.sink import WebSink

MODES = ("no web", "web, 0 clients", "web, 1 client")
#: The issue's budget: fps lost with nobody watching / with one viewer.
TARGETS = {"web, 0 clients": 1.0, "web, 1 client": 5.0}


@dataclass
class Round:
    mode: str
    frames: int
    fps: float
    cpu_ms_per_frame: float
    background_cpu_percent: float
    encoded: int
    sink_us_per_frame: float  # the web sink's CPU time on the output thread, per frame
    encode_ms: float  # mean CPU time to draw and encode one live JPEG (web client threads)


def _info(engine: Engine, source: Source, threads: int) -> RunInfo:
    return RunInfo(
        device_id="bench",
        run_id="bench",
        model=engine.name,
        task=engine.task,
        labels=tuple(engine.labels),
        runtime=engine.runner.runtime,
        runtime_version=engine.runner.runtime_version,
        threads=threads,
        source=str(getattr(source, "name", "")),
        events=True,
        version=__version__,
    )


def _viewer(url: str, fps: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgecam.web.viewer", url, "--fps", str(fps)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    proc.stdout.readline()  # "ready": imports done, before the clock starts
    return proc


def _round(
    mode: str,
    engine: Engine,
    open_src: Callable[[], Source],
    frames: int,
    *,
    config: PipelineSection,
    web: WebSection,
    threads: int,
) -> Round:
    with open_src() as source:
        null = JsonlSink(os.devnull, device_id="bench", every_frame=True, run_id="bench")
        tracker = build_event_engine(
            TrackingSection.model_validate({}),
            ObjectsSection.model_validate({}),
            (),
            EventsSection.model_validate({}),
            id_prefix="bench",
            keep_frames=False,
        )
        events = EventsSink(tracker, [null], device_id="bench", run_id="bench", model=engine.name)
        sinks: list[Sink] = [null, events]
        holder: list[Pipeline] = []
        server: WebServer | None = None
        web_sinks: list[WebSink] = []
        viewer = None
        if mode != "no web":
            server, sink = serve(
                web,
                (),
                _info(engine, source, threads),
                pipeline=lambda: holder[0] if holder else None,
                mqtt=None,
                source=source,
                tracker=tracker,
            )
            events.add_output(sink)
            sinks.append(sink)
            web_sinks.append(sink)
            if mode == "web, 1 client":
                viewer = _viewer(f"http://127.0.0.1:{server.port}", web.fps)
        try:
            pipeline = Pipeline(source, engine, sinks, config=config)
            holder.append(pipeline)
            cpu, busy, start = CpuMeter(), system_busy_s(), time.perf_counter()
            summary = pipeline.run(max_frames=frames)
            elapsed = time.perf_counter() - start
            own = cpu.cpu_seconds()
            after = system_busy_s()
        finally:
            if viewer is not None:
                viewer.kill()
                viewer.wait()
            if server is not None:
                server.stop()
            events.close()
            null.close()
    others = (after - busy - own) if busy is not None and after is not None else 0.0
    encoder = server.app.encoder if server is not None else None
    encoded = encoder.encoded if encoder is not None else 0
    sink_s = web_sinks[0].busy_s if web_sinks else 0.0
    return Round(
        mode=mode,
        frames=summary.processed,
        fps=round(summary.processed / elapsed, 2),
        cpu_ms_per_frame=round(own * 1000 / max(1, summary.processed), 3),
        background_cpu_percent=round(max(0.0, 100 * others / elapsed), 1),
        encoded=encoded,
        sink_us_per_frame=round(sink_s * 1e6 / max(1, summary.processed), 1),
        encode_ms=round(encoder.busy_s * 1000 / encoded, 2) if encoder and encoded else 0.0,
    )


def run_web_bench(
    section: ModelSection,
    spec: str,
    *,
    frames: int = 300,
    repeat: int = 3,
    config: PipelineSection | None = None,
    web: WebSection | None = None,
) -> dict[str, Any]:
    """Every mode `repeat` times, rotated; a JSON-ready report (see the module docstring)."""
    config = config or PipelineSection()
    base = web or WebSection.model_validate({})
    web = base.model_copy(update={"enabled": True, "bind": "127.0.0.1", "port": _free_port()})
    engine = open_engine(section)
    engine.warm_up()
    threads = section.threads or os.cpu_count() or 1
    size = (engine.input_spec.width, engine.input_spec.height)

    def open_src() -> Source:
        return open_source(spec, model_input=size, loop=True)

    rounds: dict[str, list[Round]] = {mode: [] for mode in MODES}
    for r in range(max(1, repeat)):
        for mode in MODES[r % 3 :] + MODES[: r % 3]:
            rounds[mode].append(
                _round(mode, engine, open_src, frames, config=config, web=web, threads=threads)
            )
    return _report(engine, spec=spec, frames=frames, threads=threads, web=web, rounds=rounds)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _report(
    engine: Engine,
    *,
    spec: str,
    frames: int,
    threads: int,
    web: WebSection,
    rounds: dict[str, list[Round]],
) -> dict[str, Any]:
    base = rounds["no web"]
    modes: dict[str, Any] = {}
    for mode, runs in rounds.items():
        pairs = list(zip(runs, base, strict=True))
        fps_cost = _median_percent([1 - r.fps / b.fps for r, b in pairs if b.fps > 0])
        cpu_cost = _median_percent(
            [r.cpu_ms_per_frame / b.cpu_ms_per_frame - 1 for r, b in pairs if b.cpu_ms_per_frame]
        )
        target = TARGETS.get(mode)
        modes[mode] = {
            "fps": round(statistics.median(r.fps for r in runs), 2),
            "cpu_ms_per_frame": round(statistics.median(r.cpu_ms_per_frame for r in runs), 3),
            "sink_us_per_frame": round(statistics.median(r.sink_us_per_frame for r in runs), 1),
            "encode_ms": round(statistics.median(r.encode_ms for r in runs), 2),
            "fps_cost_percent": fps_cost,
            "cpu_cost_percent": cpu_cost,
            "target_percent": target,
            "met": None if target is None or cpu_cost is None else cpu_cost <= target,
            "rounds": [asdict(r) for r in runs],
        }
    return {
        "model": engine.name,
        "runtime": {"name": engine.runner.runtime, "version": engine.runner.runtime_version},
        "threads": threads,
        "source": spec,
        "frames": frames,
        "cpu_count": os.cpu_count(),
        "live_fps": web.fps,
        "modes": modes,
    }


def _median_percent(values: list[float]) -> float | None:
    return round(100 * statistics.median(values), 2) if values else None


def format_web_report(report: dict[str, Any]) -> str:
    rt = report["runtime"]
    lines = [
        f"edgecam bench --web: {report['model']} on {report['source']}",
        f"{rt['name']} {rt['version']}, {report['threads']} interpreter thread(s), "
        f"{report['cpu_count']} CPU cores, {report['frames']} frames per round, "
        f"viewer asks {report['live_fps']:g} fps",
        "",
        f"{'mode':<16}{'fps':>8}{'CPU ms/f':>10}{'fps cost':>10}{'CPU cost':>10}{'target':>8}"
        "  rounds (fps)",
    ]
    for name, mode in report["modes"].items():
        target = f"≤ {mode['target_percent']:g}" if mode["target_percent"] is not None else "-"
        verdict = {True: "met", False: "NOT met", None: ""}[mode["met"]]
        runs = ", ".join(f"{r['fps']:.1f}" for r in mode["rounds"])
        lines.append(
            f"{name:<16}{mode['fps']:8.1f}{mode['cpu_ms_per_frame']:10.2f}"
            f"{_pct(mode['fps_cost_percent'])}{_pct(mode['cpu_cost_percent'])}{target:>8}"
            f"  {runs}  {verdict}"
        )
    rounds = [r for m in report["modes"].values() for r in m["rounds"]]
    busiest = max(r["background_cpu_percent"] for r in rounds)
    for name, mode in report["modes"].items():
        if name != "no web":
            lines.append(
                f"{name}: web sink {mode['sink_us_per_frame']:.0f} µs CPU per frame on the output "
                f"thread; {mode['encode_ms']:.1f} ms CPU per live JPEG"
            )
    lines.append(
        "(costs against 'no web', median over the rounds: fps lost, and extra CPU per frame, "
        f"which the verdict uses; other processes used up to {busiest:.0f} % CPU meanwhile)"
    )
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return f"{value:9.2f}%" if value is not None else f"{'-':>10}"
