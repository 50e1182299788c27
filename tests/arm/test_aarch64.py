"""edgecam on 64-bit Raspberry Pi OS (Bookworm userland: glibc 2.36, Python 3.11), emulated.

The ARM userland runs under qemu-aarch64; its results are compared with the same commands run
natively here, both on tflite-runtime 2.14: top-1 labels equal (scores within 0.02) and every
detection matched (same label, IoU >= 0.9, score within 0.02). ai-edge-litert 2.3.0 really
segfaults when it loads a model under this qemu (checked directly below), so these runs also
show that `runtime = "auto"` survives it and that `edgecam doctor` reports it.
Nothing here ran on Raspberry Pi hardware.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .emulation import (
    DOCTOR,
    Emulated,
    assert_same_classes,
    assert_same_detections,
    classify_args,
    detect_args,
    json_lines,
    run_x86,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

# Images whose classifier output is meaningful (SOURCES.md: not astronaut, face, cats_and_dogs).
CLASSIFY = [
    "bird.png",
    "burger.jpg",
    "cat_720p.jpg",
    "chelsea.png",
    "coffee.png",
    "grace_hopper.png",
    "owl.jpg",
    "pets.jpg",
    "traffic_0001.png",
]


def test_litert_really_segfaults_under_this_emulator(aarch64: Emulated, asset_models: Path) -> None:
    """Ground truth for the doctor test: load the model in-process, nothing caught. (The
    constructor returns; allocate_tensors, which applies XNNPACK, dies. Without the XNNPACK
    delegate the first invoke dies instead.)"""
    model = asset_models / "mobilenet_v2_1.0_224_quant.tflite"
    code = (
        "from ai_edge_litert.interpreter import Interpreter\n"
        f"Interpreter(model_path={str(model)!r}).allocate_tensors()"
    )
    crashed = aarch64.run(["-c", code], timeout=300)
    assert crashed.returncode == -11, crashed.stderr[-2000:]


def test_auto_skips_the_crashing_runtime_and_classifies_like_x86(
    aarch64: Emulated, asset_models: Path, asset_images: Path, tmp_path: Path
) -> None:
    images = [asset_images / name for name in CLASSIFY]
    x86 = json_lines(
        run_x86(classify_args(asset_models, images, "tflite"), tmp_path), "x86 classify"
    )
    state = tmp_path / "state"  # empty: auto must probe, not reuse an earlier choice
    proc = aarch64.run(
        classify_args(asset_models, images, "auto"), env={"XDG_STATE_HOME": str(state)}
    )
    arm = json_lines(proc, "aarch64 classify")
    assert "skipping ai-edge-litert 2.3.0: crashed with SIGSEGV" in proc.stderr
    assert_same_classes(x86, arm)
    cache = json.loads((state / "edgecam" / "runtime-choice.json").read_text())
    (entry,) = cache["entries"].values()
    assert (entry["backend"], entry["version"]) == ("tflite", "2.14.0")
    assert [a["status"] for a in entry["attempts"]] == ["crashed", "ok"]


def test_detections_match_x86(
    aarch64: Emulated, asset_models: Path, asset_images: Path, tmp_path: Path
) -> None:
    images = sorted(asset_images.glob("*.*"))
    x86 = json_lines(run_x86(detect_args(asset_models, images), tmp_path), "x86 detect")
    arm = json_lines(aarch64.run(detect_args(asset_models, images)), "aarch64 detect")
    assert_same_detections(x86, arm)


def test_doctor_reports_the_crash_and_chooses_tflite(
    aarch64: Emulated, asset_models: Path, tmp_path: Path
) -> None:
    proc = aarch64.run(
        [*DOCTOR, str(asset_models)], env={"XDG_STATE_HOME": str(tmp_path / "state")}
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert report["ok"] is True and report["runtime"] == "tflite"
    litert = checks["runtime ai-edge-litert"]
    assert litert["status"] == "warn"
    assert litert["data"]["probe"] == "crashed" and litert["data"]["signal"] == "SIGSEGV"
    assert "crashed with SIGSEGV" in litert["detail"] and litert["fix"]
    tflite = checks["runtime tflite-runtime"]
    assert tflite["status"] == "ok" and tflite["data"]["version"] == "2.14.0"
    assert checks["runtime choice"]["data"]["backend"] == "tflite"
    platform = checks["platform"]["data"]
    assert (platform["machine"], platform["libc_version"]) == ("aarch64", "2.36")
    assert platform["python"].startswith("3.11.")
    invoke = checks["invoke"]["data"]
    assert invoke["emulated"] is True and invoke["first_ms"] > 0
