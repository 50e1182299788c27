"""`edgecam bench`: every mode runs on the real video and model; the report is consistent.

Speed is never asserted (that is what the bench is for); the checks are structure and sanity:
positive rates, ratios equal to the fps they are computed from, percentiles in order, and the
frame accounting of each mode.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
from pathlib import Path
from typing import Any

import pytest

from edgecam.commands import bench as bench_cmd
from edgecam.config.model import ModelSection
from edgecam.errors import UsageError
from edgecam.sources import open_source

STAGES = {"capture", "preprocess", "invoke", "postprocess", "output"}


def _run_cli(argv: list[str]) -> int:
    """Parse and dispatch exactly as edgecam.cli does for a registered sub-command."""
    parser = argparse.ArgumentParser(prog="edgecam")
    bench_cmd.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.handler(args)
    return code


@pytest.fixture(scope="module")
def report(
    asset_models: Path, asset_video: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """One real `bench --json` run shared by the structure tests (it takes ~20 s); adaptive
    execution caches into a state directory of its own, never the user's."""
    out = io.StringIO()
    state = tmp_path_factory.mktemp("state")
    with contextlib.redirect_stdout(out), pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_STATE_HOME", str(state))
        rc = _run_cli(
            [
                *("bench", "--model", "mobilenet_v2", "--runtime", "litert", "--threads", "1"),
                *("--frames", "30", "--live-frames", "8", "--motion", "--json"),
                *("--models-dir", str(asset_models), "--source", str(asset_video)),
            ]
        )
    assert rc == 0
    lines = out.getvalue().splitlines()
    assert len(lines) == 1  # one JSON object, nothing else on stdout
    parsed: dict[str, Any] = json.loads(lines[0])
    return parsed


@pytest.mark.slow
def test_report_identifies_what_was_measured(report: dict[str, Any], asset_video: Path) -> None:
    assert report["model"] == "mobilenet_v2" and report["task"] == "classification"
    assert report["runtime"]["name"] == "litert" and report["threads"] == 1
    assert report["source"] == str(asset_video) and report["frames"] == 30
    assert report["machine"]["cpu_count"] >= 1
    assert set(report["modes"]) == {"raw", "sequential", "pipeline", "live", "motion"}
    assert set(report["processes"]) >= {"run", "plain", "run_vs_plain", "execution"}


@pytest.mark.slow
def test_whole_processes_run_the_same_frames_and_the_ratio_follows(
    report: dict[str, Any],
) -> None:
    proc = report["processes"]
    (run,), (plain,) = proc["run"], proc["plain"]
    assert run["frames"] == plain["frames"] == 30  # both wrote one JSON line per frame
    for one in (run, plain):
        assert one["fps"] == pytest.approx(one["frames"] / one["elapsed_s"], rel=0.01)
        assert 0 < one["peak_rss_mb"] < 1000  # the child's own peak, not the bench's
    assert proc["run_vs_plain"]["rounds"] == [pytest.approx(run["fps"] / plain["fps"], abs=2e-3)]
    assert 0 < run["first_result_s"] < run["elapsed_s"]
    for one in (run, plain):  # CPU of the whole child process, from the kernel
        assert one["cpu_ms_per_frame"] == pytest.approx(1000 * one["cpu_s"] / 30, rel=0.01)
    assert proc["cpu_efficiency_vs_plain"]["median"] == pytest.approx(
        plain["cpu_ms_per_frame"] / run["cpu_ms_per_frame"], rel=0.02
    )
    # what adaptive execution picked, read back from the run's INFO log
    execution = proc["execution"]
    if execution["chosen_by"] == "calibrating":  # 30 frames may end before it decided
        assert execution["mode"] is None
    else:
        assert execution["mode"] in ("sequential", "pipelined")
        # `run` gets the model, not --threads: its defaults pick the interpreter threads
        assert 1 <= execution["threads"] <= (os.cpu_count() or 1)


@pytest.mark.slow
def test_around_invoke_breakdown_adds_up(report: dict[str, Any]) -> None:
    lean = report["around_invoke"]
    parts = lean["us_per_frame"]
    assert set(parts) == {"postprocess", "payload", "json", "write", "books", "stats"}
    assert all(v > 0 for v in parts.values())
    assert lean["total_us"] == pytest.approx(sum(parts.values()), abs=0.5)
    assert lean["share_of_invoke"] == pytest.approx(
        lean["total_us"] / 1000 / lean["invoke_ms"], abs=1e-4
    )


@pytest.mark.slow
def test_every_mode_is_sane(report: dict[str, Any]) -> None:
    for name, mode in report["modes"].items():
        assert mode["fps"] > 0 and mode["elapsed_s"] > 0, name
        assert mode["fps"] == pytest.approx(mode["frames"] / mode["elapsed_s"], rel=0.01), name
        assert mode["peak_rss_mb"] > 0 and mode["cpu_percent"] > 0, name
        assert mode["background_cpu_percent"] >= 0, name
        assert mode["cpu_ms_per_frame"] == pytest.approx(
            mode["cpu_percent"] * mode["elapsed_s"] * 10 / mode["frames"], rel=0.01
        ), name
        invoke = mode["stages_ms"]["invoke"]
        assert 0 < invoke["p50"] <= invoke["p95"], name
    raw = report["modes"]["raw"]
    assert raw["frames"] == 30 and raw["latency_ms"] == {}  # no capture in the raw mode
    for name in ("sequential", "pipeline"):
        mode = report["modes"][name]
        assert mode["frames"] == 30, name
        assert set(mode["stages_ms"]) == STAGES, name
        lat = mode["latency_ms"]
        assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"], name
        # capture-to-result contains at least the invoke of that frame
        assert lat["p50"] >= mode["stages_ms"]["invoke"]["p50"] * 0.9, name
    assert report["modes"]["pipeline"]["extra"]["dropped"] == 0  # replay drops nothing


@pytest.mark.slow
def test_live_and_motion_modes(report: dict[str, Any]) -> None:
    live = report["modes"]["live"]
    assert live["frames"] == 8 and live["extra"]["paced_fps"] == pytest.approx(10.0)
    assert live["extra"]["frames_in"] >= 8
    motion = report["modes"]["motion"]["extra"]
    # Every frame read is either processed or skipped by the gate.
    assert motion["frames_in"] == report["modes"]["motion"]["frames"] + motion["motion_skipped"]


@pytest.mark.slow
def test_ratios_and_targets_follow_from_the_numbers(report: dict[str, Any]) -> None:
    fps = {name: mode["fps"] for name, mode in report["modes"].items()}
    ratios = report["ratios"]
    assert ratios["pipeline_vs_sequential"] == pytest.approx(
        fps["pipeline"] / fps["sequential"], abs=1e-3
    )
    assert ratios["pipeline_vs_raw"] == pytest.approx(fps["pipeline"] / fps["raw"], abs=1e-3)
    targets = report["targets"]
    assert targets["run_vs_plain"]["value"] == report["processes"]["run_vs_plain"]["median"]
    assert targets["run_vs_plain"]["target"] == 1.0  # 1.2 only for a re-encoded source
    for name, target in targets.items():
        value, met = target["value"], target["met"]
        assert value is not None, name
        wanted = value >= target["target"] if name == "run_vs_plain" else value <= target["target"]
        assert met is wanted, name
    startup = report["startup"]
    assert 0 < startup["model_load_s"] <= startup["to_first_result_s"]
    assert startup["process_age_at_first_result_s"] >= startup["to_first_result_s"]
    assert 0 <= report["decode_share"] <= 1


def test_text_report_names_each_mode_and_verdict(asset_models: Path, asset_video: Path) -> None:
    from edgecam.pipeline.bench_suite import BenchOptions, run_bench

    section = ModelSection(
        name="mobilenet_v1_0.25_128", models_dir=asset_models, runtime="litert", threads=1
    )
    options = BenchOptions(frames=5, live_frames=0, processes=False, reencode=(320, 240))
    report = run_bench(section, str(asset_video), options)
    text = bench_cmd.format_report(report)
    for needle in ("raw", "sequential", "pipeline", "around invoke", "targets:"):
        assert needle in text
    assert "live" not in report["modes"]  # --live-frames 0 skips the simulation
    assert report["targets"]["live_p95_vs_invoke"]["met"] is None
    assert report["targets"]["run_vs_plain"]["met"] is None  # no processes: not measured
    # the decode-heavy copy was made (and the report says so), then deleted with its tmp dir
    assert report["reencoded"] == "320x240 MJPEG" and report["source"] == str(asset_video)
    assert report["targets"]["run_vs_plain"]["target"] == 1.2


def test_paced_live_source_is_live_and_restamps(asset_video: Path) -> None:
    from edgecam.sources.paced import PacedLive

    with PacedLive(open_source(str(asset_video)), fps=200.0) as live:
        frames = [live.read() for _ in range(3)]
    assert live.live and all(f is not None for f in frames)
    stamps = [f.monotonic for f in frames if f is not None]
    assert stamps == sorted(stamps) and [f.seq for f in frames if f is not None] == [0, 1, 2]
    assert live.read() is None  # closed


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--frames", "0"), ("--live-frames", "-1"), ("--reencode", "1080p"), ("--reencode", "0x5")],
)
def test_bad_counts_are_usage_errors(asset_video: Path, flag: str, value: str) -> None:
    with pytest.raises(UsageError, match=flag):
        _run_cli(["bench", "--source", str(asset_video), flag, value])
