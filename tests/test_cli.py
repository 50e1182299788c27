"""The executable's own error handling: failures name what failed, never a bare errno."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def _edgecam_to_full_disk(*args: str, models: Path) -> subprocess.CompletedProcess[str]:
    """Run the executable with its standard output on Linux's always-full device."""
    with open("/dev/full", "wb") as full:
        return subprocess.run(
            [sys.executable, "-m", "edgecam", *args],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "EDGECAM_MODELS_DIR": str(models)},
            timeout=120,
            check=False,
        )


@pytest.mark.parametrize("args", [["models", "list"], ["config", "show"]])
def test_a_full_disk_behind_standard_output_is_named(args: list[str], asset_models: Path) -> None:
    proc = _edgecam_to_full_disk(*args, models=asset_models)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        "edgecam: error: standard output: No space left on device"
    )
    assert "Traceback" not in proc.stderr


def test_run_on_a_full_disk_names_the_output(asset_models: Path, asset_images: Path) -> None:
    image = str(asset_images / "pets.jpg")
    run = ["run", "--model", "ssd_mobilenet_v1", "--source", image]
    to_stdout = _edgecam_to_full_disk(*run, models=asset_models)
    to_file = _edgecam_to_full_disk(*run, "-o", "/dev/full", models=asset_models)
    for proc, name in ((to_stdout, "standard output"), (to_file, "/dev/full")):
        assert proc.returncode == 1, proc.stderr
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith(f"edgecam: error: {name}: cannot write JSON lines: No space")
        assert "Traceback" not in proc.stderr
