"""edgecam on 64-bit Raspberry Pi OS (Bookworm userland: glibc 2.36, Python 3.11), emulated.

The ARM userland runs under qemu-aarch64; its results are compared with the same commands run
natively here, both on tflite-runtime 2.14: top-1 labels equal (scores within 0.02) and every
detection matched (same label, IoU >= 0.9, score within 0.02). ai-edge-litert 2.3.0 really
segfaults when it loads a model under qemu 7.2 on an x86_64 host (checked directly below);
what it does elsewhere is read from the same direct check, and `runtime = "auto"` and
`edgecam doctor` must agree with it: skip and report a crash, or use litert when it works.
Nothing here ran on Raspberry Pi hardware.
"""

from __future__ import annotations

import json
import platform
import signal
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


@pytest.fixture(scope="module")
def litert_crashes(aarch64: Emulated, asset_models: Path) -> bool:
    """Ground truth for the tests below: load the model in-process, nothing caught. (Under
    qemu on x86_64 the constructor returns; allocate_tensors, which applies XNNPACK, dies.)"""
    model = asset_models / "mobilenet_v2_1.0_224_quant.tflite"
    code = (
        "from ai_edge_litert.interpreter import Interpreter\n"
        f"Interpreter(model_path={str(model)!r}).allocate_tensors()"
    )
    proc = aarch64.run(["-c", code], timeout=300)
    assert proc.returncode in (0, -signal.SIGSEGV, -signal.SIGILL), proc.stderr[-2000:]
    return proc.returncode != 0


def test_litert_segfaults_under_qemu_on_x86_64(litert_crashes: bool) -> None:
    if platform.machine() == "x86_64":  # measured: qemu 7.2, any -cpu
        assert litert_crashes, "ai-edge-litert 2.3.0 no longer crashes under qemu-aarch64 here"


def test_auto_skips_a_crashing_runtime_and_classifies_like_the_native_run(
    aarch64: Emulated, asset_models: Path, asset_images: Path, tmp_path: Path, litert_crashes: bool
) -> None:
    images = [asset_images / name for name in CLASSIFY]
    native = json_lines(
        run_native(classify_args(asset_models, images, "tflite"), tmp_path), "native classify"
    )
    state = tmp_path / "state"  # empty: auto must probe, not reuse an earlier choice
    proc = aarch64.run(
        classify_args(asset_models, images, "auto"), env={"XDG_STATE_HOME": str(state)}
    )
    arm = json_lines(proc, "aarch64 classify")
    assert_same_classes(native, arm)
    cache = json.loads((state / "edgecam" / "runtime-choice.json").read_text())
    (entry,) = cache["sections"]["choice"].values()
    if litert_crashes:
        assert "skipping ai-edge-litert 2.3.0: crashed with SIG" in proc.stderr
        assert (entry["runtime"], entry["version"]) == ("tflite", "2.14.0")
        assert [a["status"] for a in entry["attempts"]] == ["crashed", "ok"]
    else:
        assert (entry["runtime"], [a["status"] for a in entry["attempts"]]) == ("litert", ["ok"])


def test_detections_match_the_native_run(
    aarch64: Emulated, asset_models: Path, asset_images: Path, tmp_path: Path
) -> None:
    images = sorted(asset_images.glob("*.*"))
    native = json_lines(run_native(detect_args(asset_models, images), tmp_path), "native detect")
    arm = json_lines(aarch64.run(detect_args(asset_models, images)), "aarch64 detect")
    assert_same_detections(native, arm)


def test_doctor_reports_what_each_runtime_did(
    aarch64: Emulated, asset_models: Path, tmp_path: Path, litert_crashes: bool
) -> None:
    proc = aarch64.run(
        [*DOCTOR, str(asset_models)], env={"XDG_STATE_HOME": str(tmp_path / "state")}
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert report["ok"] is True
    litert = checks["runtime ai-edge-litert"]
    tflite = checks["runtime tflite-runtime"]
    assert tflite["status"] == "ok" and tflite["data"]["version"] == "2.14.0"
    if litert_crashes:
        assert report["runtime"] == "tflite" and litert["status"] == "warn"
        assert litert["data"]["probe"] == "crashed" and litert["data"]["signal"] in (
            "SIGSEGV",
            "SIGILL",
        )
        assert "crashed with SIG" in litert["detail"] and litert["fix"]
        assert checks["runtime choice"]["data"]["runtime"] == "tflite"
    else:
        assert report["runtime"] == "litert" and litert["status"] == "ok"
    facts = checks["platform"]["data"]
    assert (facts["machine"], facts["libc_version"]) == ("aarch64", "2.36")
    assert facts["python"].startswith("3.11.")
    invoke = checks["invoke"]["data"]
    # qemu-user shows the host's /proc/cpuinfo: only a non-ARM host gives the emulation away.
    host_is_arm = platform.machine() in ("aarch64", "armv7l")
    assert invoke["emulated"] is (not host_is_arm) and invoke["first_ms"] > 0
