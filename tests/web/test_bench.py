"""`edgecam bench --web` on the real detector and the asset video: every mode runs the real
pipeline; nothing is encoded without a viewer, the viewer gets frames at its pace."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import REPO


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_web_bench_report(asset_models: Path, asset_video: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgecam",
            "bench",
            "--web",
            "--model",
            "ssd_mobilenet_v1",
            "--source",
            str(asset_video),
            "--frames",
            "60",
            "--repeat",
            "1",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=540,
        env={**os.environ, "PYTHONPATH": str(REPO), "EDGECAM_MODELS_DIR": str(asset_models)},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    modes = report["modes"]
    assert list(modes) == ["no web", "web, 0 clients", "web, 1 client"]
    for mode in modes.values():
        [one] = mode["rounds"]
        assert one["frames"] == 60 and one["fps"] > 0 and one["cpu_ms_per_frame"] > 0
    assert modes["no web"]["rounds"][0]["encoded"] == 0
    assert modes["web, 0 clients"]["rounds"][0]["encoded"] == 0  # nobody watching: no JPEG
    assert modes["web, 1 client"]["rounds"][0]["encoded"] >= 1
    assert modes["web, 0 clients"]["target_percent"] == 1.0
    assert modes["web, 1 client"]["target_percent"] == 5.0
    assert isinstance(modes["web, 1 client"]["cpu_cost_percent"], float)
