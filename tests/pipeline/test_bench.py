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
def report(asset_models: Path, asset_video: Path) -> dict[str, Any]:
    """One real `bench --json` run shared by the structure tests (it takes ~10 s)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
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
    assert targets["pipeline_vs_raw"]["value"] == ratios["pipeline_vs_raw"]
    for name, target in targets.items():
        value, met = target["value"], target["met"]
        assert value is not None, name
        wanted = (
            value >= target["target"]
            if name.startswith("pipeline_vs")
            else (value <= target["target"])
        )
        assert met is wanted, name
    startup = report["startup"]
    assert 0 < startup["model_load_s"] <= startup["to_first_result_s"]
    assert startup["process_age_at_first_result_s"] >= startup["to_first_result_s"]
    assert 0 <= report["decode_share"] <= 1


def test_text_report_names_each_mode_and_verdict(asset_models: Path, asset_video: Path) -> None:
    from edgecam.pipeline.bench import run_bench

    section = ModelSection(
        name="mobilenet_v1_0.25_128", models_dir=asset_models, runtime="litert", threads=1
    )
    report = run_bench(section, str(asset_video), frames=5, live_frames=0)
    text = bench_cmd.format_report(report)
    for needle in ("raw", "sequential", "pipeline", "pipeline / sequential", "targets:"):
        assert needle in text
    assert "live" not in report["modes"]  # --live-frames 0 skips the simulation
    assert report["targets"]["live_p95_vs_invoke"]["met"] is None


def test_paced_live_source_is_live_and_restamps(asset_video: Path) -> None:
    from edgecam.sources.paced import PacedLive

    with PacedLive(open_source(str(asset_video)), fps=200.0) as live:
        frames = [live.read() for _ in range(3)]
    assert live.live and all(f is not None for f in frames)
    stamps = [f.monotonic for f in frames if f is not None]
    assert stamps == sorted(stamps) and [f.seq for f in frames if f is not None] == [0, 1, 2]
    assert live.read() is None  # closed


@pytest.mark.parametrize(("flag", "value"), [("--frames", "0"), ("--live-frames", "-1")])
def test_bad_counts_are_usage_errors(asset_video: Path, flag: str, value: str) -> None:
    with pytest.raises(UsageError, match=flag):
        _run_cli(["bench", "--source", str(asset_video), flag, value])
