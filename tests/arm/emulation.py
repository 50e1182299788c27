"""An emulated Raspberry Pi OS userland for the ARM tests, and the native run to compare with.

`build_sysroot.sh` makes (or reuses from its cache) a Debian-bookworm ARM root with Python 3.11
and the ARM wheels; edgecam itself is built into a wheel from this checkout and installed with
`pip install --target`, exactly like a user's `pip install`. Commands then run under
qemu-user through the sysroot's `python3` wrapper. A missing qemu FAILS the run: a green CI
that skipped the only ARM evidence would prove nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.paths import REPO

BUILD = Path(__file__).with_name("build_sysroot.sh")
QEMU = {"aarch64": "qemu-aarch64-static", "armv7l": "qemu-arm-static"}


@dataclass(frozen=True)
class Emulated:
    """One ARM Python with edgecam installed; runs commands in a scratch directory."""

    arch: str
    python: Path
    site: Path
    workdir: Path

    def run(
        self, args: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        return _run([str(self.python), *args], self.site, self.workdir, env, timeout)


def _run(
    cmd: list[str], pythonpath: Path, cwd: Path, env: dict[str, str] | None, timeout: float
) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "EDGECAM_"))}
    full.pop("STATE_DIRECTORY", None)
    full.update(
        PYTHONPATH=str(pythonpath),
        HOME=str(cwd),
        XDG_STATE_HOME=str(cwd / "state"),
        XDG_CACHE_HOME=str(cwd / "cache"),
    )
    full.update(env or {})
    return subprocess.run(
        cmd, cwd=cwd, env=full, capture_output=True, text=True, timeout=timeout, check=False
    )


def require_qemu(arch: str) -> str:
    found = shutil.which(QEMU[arch])
    if found is None:
        pytest.fail(f"{QEMU[arch]} not found: apt-get install qemu-user-static", pytrace=False)
    return found


def emulated(arch: str, factory: pytest.TempPathFactory, wheel: Path) -> Emulated:
    require_qemu(arch)
    env = {**os.environ, "EDGECAM_HOST_PYTHON": sys.executable}  # its pip fetches the wheels
    built = subprocess.run(
        ["bash", str(BUILD), arch],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    if built.returncode != 0:
        pytest.fail(f"{BUILD.name} {arch} failed:\n{built.stderr[-3000:]}", pytrace=False)
    root = Path(built.stdout.strip().splitlines()[-1])
    site = factory.mktemp(f"site-{arch}")
    pip = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-compile",
            "--target",
            str(site),
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if pip.returncode != 0:
        pytest.fail(f"installing {wheel.name} for {arch} failed: {pip.stderr[-2000:]}")
    return Emulated(arch, root / "sysroot" / "usr" / "bin" / "python3", site, factory.mktemp(arch))


def run_native(args: Sequence[str], workdir: Path) -> subprocess.CompletedProcess[str]:
    """The same edgecam command natively (this checkout, this venv)."""
    return _run([sys.executable, *args], REPO, workdir, None, 600)


def json_lines(proc: subprocess.CompletedProcess[str], what: str) -> list[dict[str, Any]]:
    assert proc.returncode == 0, f"{what}: exit {proc.returncode}\n{proc.stderr[-3000:]}"
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


# ---- comparing an ARM run with the native run ------------------------------------------------

SCORE_TOL = 0.02  # same runtime version, different CPU kernels: scores may move this much
MIN_IOU = 0.9


def iou(a: dict[str, float], b: dict[str, float]) -> float:
    """IoU of two normalized {xmin, ymin, xmax, ymax} boxes."""
    w = min(a["xmax"], b["xmax"]) - max(a["xmin"], b["xmin"])
    h = min(a["ymax"], b["ymax"]) - max(a["ymin"], b["ymin"])
    inter = max(0.0, w) * max(0.0, h)
    area = (a["xmax"] - a["xmin"]) * (a["ymax"] - a["ymin"])
    area += (b["xmax"] - b["xmin"]) * (b["ymax"] - b["ymin"])
    return inter / (area - inter) if area > inter else 0.0


def unmatched(
    wanted: list[dict[str, Any]], pool: list[dict[str, Any]], threshold: float
) -> list[str]:
    """Detections in `wanted` clear of the threshold by more than the score tolerance that
    have no partner in `pool` (same label, IoU >= 0.9, score within 0.02). A detection within
    the tolerance of the threshold may legitimately fall below it on the other CPU."""
    problems = []
    for det in wanted:
        if det["score"] < threshold + SCORE_TOL:
            continue
        if not any(
            other["label"] == det["label"]
            and iou(other["box"], det["box"]) >= MIN_IOU
            and abs(other["score"] - det["score"]) <= SCORE_TOL
            for other in pool
        ):
            problems.append(f"{det['label']} {det['score']:.3f} {det['box']}")
    return problems


def top1_problem(native: list[dict[str, Any]], arm: list[dict[str, Any]]) -> str | None:
    """Same top-1 label and score within tolerance, where native's top-1 is unambiguous (its
    margin over the runner-up exceeds twice the tolerance)."""
    if not native or not arm:
        return f"empty classification: native {native}, arm {arm}"
    runner_up = native[1]["score"] if len(native) > 1 else 0.0
    if native[0]["score"] - runner_up <= 2 * SCORE_TOL:
        return None
    if arm[0]["label"] != native[0]["label"]:
        return f"top-1 {arm[0]['label']!r}, native {native[0]['label']!r}"
    if abs(arm[0]["score"] - native[0]["score"]) > SCORE_TOL:
        return f"{native[0]['label']}: score {arm[0]['score']}, native {native[0]['score']}"
    return None


# ---- the commands compared, and the assertions ------------------------------------------

THRESHOLD = 0.5
DOCTOR = ["-m", "edgecam", "doctor", "--json", "--model", "mobilenet_v2", "--models-dir"]


def classify_args(models: Path, images: list[Path], runtime: str) -> list[str]:
    model = ["--model", "mobilenet_v2", "--models-dir", str(models), "--runtime", runtime]
    options = ["--threshold", "0", "--top-k", "3"]  # runner-up scores, to judge ambiguity
    return ["-m", "edgecam", "classify", *model, *options, *map(str, images)]


def detect_args(models: Path, images: list[Path]) -> list[str]:
    model = ["--model", "ssd_mobilenet_v1", "--models-dir", str(models), "--runtime", "tflite"]
    return ["-m", "edgecam", "detect", *model, "--threshold", str(THRESHOLD), *map(str, images)]


def assert_same_classes(native: list[dict[str, Any]], arm: list[dict[str, Any]]) -> None:
    assert [r["image"] for r in arm] == [r["image"] for r in native]
    problems = {}
    for a, b in zip(native, arm, strict=True):
        problem = top1_problem(a["classification"], b["classification"])
        if problem:
            problems[Path(a["image"]).name] = problem
    assert not problems


def assert_same_detections(native: list[dict[str, Any]], arm: list[dict[str, Any]]) -> None:
    assert [r["image"] for r in arm] == [r["image"] for r in native]
    problems = {}
    for a, b in zip(native, arm, strict=True):
        missing = unmatched(a["detections"], b["detections"], THRESHOLD)
        extra = unmatched(b["detections"], a["detections"], THRESHOLD)
        if missing or extra:
            problems[Path(a["image"]).name] = {"missing on arm": missing, "extra on arm": extra}
    assert not problems
    assert sum(len(r["detections"]) for r in arm) >= len(arm)  # not a vacuous comparison
