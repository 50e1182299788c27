"""`edgecam bench`: raw invoke, the sequential loop, the pipeline, `edgecam run` and the plain
loop of the examples on one model and one input, in alternating rounds."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from edgecam.commands.common import (
    add_config_flags,
    add_model_flags,
    load_with_overrides,
    model_overrides,
)
from edgecam.errors import EXIT_OK, UsageError
from edgecam.pipeline.bench_suite import BenchOptions, run_bench
from edgecam.web.bench import format_web_report, run_web_bench

COLUMNS = ("capture", "preprocess", "invoke", "postprocess", "output")
#: Background CPU (% of one core) above which the text report warns that numbers are noisy.
BUSY_WARNING_PERCENT = 20.0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="measure raw invoke, the pipeline, `edgecam run` and the plain loop on one input",
        description=(
            "Benchmark one model on one source: (1) raw invoke throughput, (2) the sequential "
            "capture->preprocess->invoke->postprocess->output loop, (3) the pipelined "
            "arrangement, (4) `edgecam run` at its defaults as a whole process, (5) the plain "
            "loop of the picamera2/TFLite examples as a whole process; plus start-up, a "
            "live-camera simulation, and what every stage around invoke costs."
        ),
    )
    add_config_flags(parser)
    add_model_flags(parser, default_help="(default: ssd_mobilenet_v1)")
    parser.add_argument("--source", "-s", required=True, help="video file, frames dir, camera...")
    parser.add_argument("--frames", type=int, default=300, help="frames per mode (default 300)")
    parser.add_argument(
        "--live-frames",
        type=int,
        default=100,
        help="frames for the live simulation at the video's own fps (0: skip; default 100)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="alternating rounds of every mode; ratios per round with their spread (default 1)",
    )
    parser.add_argument(
        "--reencode",
        metavar="WxH",
        help="first re-encode the source as MJPEG at this size (decode-heavy input), e.g. "
        "1920x1080; the file lives in a temporary directory",
    )
    parser.add_argument(
        "--no-processes",
        action="store_true",
        help="skip the whole-process modes (`edgecam run`, the plain loop)",
    )
    parser.add_argument("--motion", action="store_true", help="also run with motion gating")
    parser.add_argument(
        "--web",
        action="store_true",
        help="instead: the web page's cost (no web vs web with 0 and 1 viewers; --repeat rounds)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.set_defaults(handler=bench_command)


class TqdmProgress:
    """One tqdm bar per mode on stderr; only constructed when stderr is a terminal."""

    def __init__(self) -> None:
        self._bar: Any = None

    def start(self, mode: str, total: int) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=total, desc=f"{mode:<11}", unit="frame", leave=False)

    def advance(self) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def bench_command(args: argparse.Namespace) -> int:
    if args.frames < 1:
        raise UsageError(f"--frames: expected a positive number of frames, got {args.frames}")
    if args.repeat < 1:
        raise UsageError(f"--repeat: expected 1 or more rounds, got {args.repeat}")
    if args.live_frames < 0:
        raise UsageError(f"--live-frames: expected 0 or more, got {args.live_frames}")
    overrides = model_overrides(args)
    overrides["model.name"] = args.model or "ssd_mobilenet_v1"
    config = load_with_overrides(args, overrides)
    if args.web:
        web_report = run_web_bench(
            config.model,
            args.source,
            frames=args.frames,
            repeat=args.repeat,
            config=config.pipeline,
            web=config.web,
        )
        print(json.dumps(web_report) if args.json else format_web_report(web_report))
        return EXIT_OK
    progress = TqdmProgress() if sys.stderr.isatty() else None
    options = BenchOptions(
        frames=args.frames,
        live_frames=args.live_frames,
        motion=args.motion,
        repeat=args.repeat,
        processes=not args.no_processes,
        reencode=_size(args.reencode) if args.reencode else None,
        run_args=_run_args(args, config.model.name),
    )
    report = run_bench(
        config.model, args.source, options, config=config.pipeline, progress=progress
    )
    print(json.dumps(report) if args.json else format_report(report))
    return EXIT_OK


def _size(text: str) -> tuple[int, int]:
    width, sep, height = text.lower().partition("x")
    if not sep or not width.isdigit() or not height.isdigit() or not int(width) or not int(height):
        raise UsageError(f"--reencode: expected WIDTHxHEIGHT like 1920x1080, got {text!r}")
    return int(width), int(height)


def _run_args(args: argparse.Namespace, model: str) -> list[str]:
    """The model flags `edgecam run` needs to run the same model; nothing else (defaults)."""
    out = ["--model", model]
    for flag, value in (
        ("--models-dir", args.models_dir),
        ("--labels-file", args.labels_file),
        ("--runtime", args.runtime),
        ("--config", args.config),
    ):
        if value is not None:
            out += [flag, str(value)]
    for item in args.set_values:
        out += ["--set", item]
    return out


def _ms(stages: dict[str, dict[str, float]], name: str) -> str:
    return f"{stages[name]['mean']:8.2f}" if name in stages else f"{'-':>8}"


def _lat(latency: dict[str, float], q: str) -> str:
    return f"{latency[q]:8.1f}" if q in latency else f"{'-':>8}"


def format_report(report: dict[str, Any]) -> str:
    """The human table: one row per mode, then ratios, start-up and targets."""
    return "\n".join(_table(report) + _notes(report))


def _table(report: dict[str, Any]) -> list[str]:
    rt = report["runtime"]
    lines = [
        f"edgecam bench: {report['model']} ({report['task']}) on {report['source']}",
        f"{rt['name']} {rt['version']}, {report['threads']} interpreter thread(s), "
        f"{report['machine']['cpu_count']} CPU cores, {report['machine']['system']} "
        f"{report['machine']['arch']}, {report['frames']} frames per mode",
        "",
        f"{'mode':<11}{'fps':>8}{'lat p50':>8}{'p95':>8}{'p99':>8}"
        + "".join(f"{c[:8]:>9}" for c in COLUMNS)
        + f"{'CPU %':>7}{'bg CPU':>7}{'CPU ms/f':>9}{'peak RSS':>10}",
    ]
    for name, mode in report["modes"].items():
        lat, stages = mode["latency_ms"], mode["stages_ms"]
        lines.append(
            f"{name:<11}{mode['fps']:8.1f}{_lat(lat, 'p50')}{_lat(lat, 'p95')}{_lat(lat, 'p99')}"
            + "".join(f" {_ms(stages, c)}" for c in COLUMNS)
            + f"{mode['cpu_percent']:7.0f}{mode['background_cpu_percent']:7.0f}"
            + f"{mode['cpu_ms_per_frame']:9.2f}"
            + f"{mode['peak_rss_mb']:7.1f} MB"
        )
    return lines


def _notes(report: dict[str, Any]) -> list[str]:
    lines = [
        "(latency = capture to result, ms; stage columns = mean ms per frame; "
        "CPU % = this process, bg CPU = all other processes, 100 = one core)"
    ]
    busiest = max(m["background_cpu_percent"] for m in report["modes"].values())
    if busiest > BUSY_WARNING_PERCENT:
        lines.append(
            f"WARNING: other processes used up to {busiest:.0f} % CPU during the run: the "
            "modes competed for cores, repeat on an idle machine (or use --repeat)"
        )
    for name in ("live", "motion"):
        extra = report["modes"].get(name, {}).get("extra")
        if extra:
            lines.append(
                f"{name}: {extra['frames_in']} frames in, {extra['dropped']} dropped, "
                f"{extra['motion_skipped']} skipped by motion, input {extra['input_fps']:.1f} fps"
            )
    ratios, start = report["ratios"], report["startup"]
    lines += _processes(report.get("processes")) + _lean(report["around_invoke"])
    live = report["modes"].get("live", {}).get("extra", {}).get("execution")
    if live:
        lines.append(f"live simulation ran {live.get('running')} ({live.get('chosen_by')})")
    lines += [
        "",
        f"pipeline / sequential: {ratios['pipeline_vs_sequential']}x   "
        f"pipeline / raw invoke: {ratios['pipeline_vs_raw']}x   "
        f"decode share of the sequential frame: {report['decode_share']}",
        f"start-up to first result: {start['to_first_result_s']:.2f} s (model load "
        f"{start['model_load_s']:.2f} s; {start['process_age_at_first_result_s']:.2f} s since "
        "process start)",
        "targets:",
    ]
    for name, t in report["targets"].items():
        verdict = {True: "met", False: "NOT met", None: "not measured"}[t["met"]]
        lines.append(f"  {name:<24} {t['value']!s:>8}  target {t['target']:<6} {verdict}")
    return lines


def _processes(proc: dict[str, Any] | None) -> list[str]:
    """Whole processes: `edgecam run` at its defaults vs the plain loop, per round."""
    if not proc:
        return []
    ratio = proc["run_vs_plain"]
    execution = proc.get("execution") or {}
    threads = execution.get("threads")
    picked = execution.get("mode", "?") + (f"/{threads}" if threads else "")
    first = proc.get("run_first_result_s") or {}
    lines = [
        "",
        "whole process (spawn to exit):  "
        + "   ".join(
            f"round {i + 1}: run {r['fps']:.1f} fps, plain {p['fps']:.1f} fps"
            for i, (r, p) in enumerate(zip(proc["run"], proc["plain"], strict=True))
        ),
        f"edgecam run / plain loop: {ratio['median']}x (rounds {ratio['rounds']}, spread "
        f"{ratio['min']}-{ratio['max']}); run picked {picked} ({execution.get('chosen_by', '?')})",
        "CPU per frame (whole process): "
        + "   ".join(
            f"run {r['cpu_ms_per_frame']:.1f} ms, plain {p['cpu_ms_per_frame']:.1f} ms"
            for r, p in zip(proc["run"], proc["plain"], strict=True)
        ),
        f"peak RSS: run {proc['run_peak_rss_mb']:.1f} MB, plain loop "
        f"{proc['plain_peak_rss_mb']:.1f} MB; run start to first result "
        f"{first.get('median', float('nan')):.2f} s",
    ]
    return lines


def _lean(lean: dict[str, Any]) -> list[str]:
    parts = ", ".join(f"{k} {v:.0f}" for k, v in lean["us_per_frame"].items())
    return [
        f"around invoke, us per frame ({lean['detections']} detections): {parts}; total "
        f"{lean['total_us']:.0f} us = {100 * (lean['share_of_invoke'] or 0):.1f} % of invoke "
        f"({lean['invoke_ms']:.2f} ms)"
    ]
