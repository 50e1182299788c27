"""edgecam on 32-bit Raspberry Pi OS (Bookworm armhf userland), emulated with qemu-arm.

There are no armv7l wheels of numpy<2, OpenCV or ai-edge-litert on PyPI, so this userland uses
Debian's python3-numpy (1.24) and python3-opencv (4.6), as a `--system-site-packages` venv on a
32-bit Pi does, plus the tflite-runtime 2.14 armv7l wheel. Same comparison with the native run
as the aarch64 test; doctor must find ai-edge-litert missing and pick tflite-runtime.
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
    run_native,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

# Fewer images than on aarch64: 32-bit emulation is slower, and these cover both tasks.
CLASSIFY = ["bird.png", "coffee.png", "grace_hopper.png", "pets.jpg"]
DETECT = ["pets.jpg", "traffic_0001.png", "coffee.png", "owl.jpg"]


def test_classify_and_detect_match_the_native_run(
    armv7l: Emulated, asset_models: Path, asset_images: Path, tmp_path: Path
) -> None:
    images = [asset_images / n for n in CLASSIFY]
    native = json_lines(
        run_native(classify_args(asset_models, images, "tflite"), tmp_path), "native classify"
    )
    arm = json_lines(armv7l.run(classify_args(asset_models, images, "auto")), "armv7l classify")
    assert_same_classes(native, arm)
    images = [asset_images / n for n in DETECT]
    native = json_lines(run_native(detect_args(asset_models, images), tmp_path), "native detect")
    arm = json_lines(armv7l.run(detect_args(asset_models, images)), "armv7l detect")
    assert_same_detections(native, arm)


def test_doctor_finds_only_tflite_runtime(armv7l: Emulated, asset_models: Path) -> None:
    proc = armv7l.run([*DOCTOR, str(asset_models)])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert report["runtime"] == "tflite"
    assert checks["runtime ai-edge-litert"]["data"]["probe"] == "missing"
    assert checks["runtime ai-edge-litert"]["status"] == "ok"  # not needed: tflite works
    assert checks["runtime tflite-runtime"]["status"] == "ok"
    assert checks["platform"]["data"]["machine"] == "armv7l"
