"""The shipped systemd unit: notify/watchdog/restart semantics, every hardening key, and what
systemd itself says about it (`systemd-analyze verify` and `security --offline=true`).

systemd is not PID 1 here or in CI, but systemd-analyze works on unit files. `verify` exits 0
even when it ignores a misspelt key, so it is judged by its stderr being empty; it also needs
the ExecStart binary to exist, so it runs on a copy pointing at /usr/bin/true.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgecam.config import DEFAULT_CONFIG_PATH, load_config
from edgecam.service.install import DEFAULT_EXEC, Layout, render_unit
from tests.support.paths import REPO

UNIT = REPO / "systemd" / "edgecam.service"
MAX_EXPOSURE = 3.0


def parse_unit(text: str) -> dict[str, list[tuple[str, str]]]:
    """[section] -> (key, value) in order; repeated keys kept (DeviceAllow=, Environment=)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            sections.setdefault(current, [])
            continue
        key, _, value = line.partition("=")
        sections[current].append((key.strip(), value.strip()))
    return sections


def values(section: list[tuple[str, str]], key: str) -> list[str]:
    return [v for k, v in section if k == key]


def one(section: list[tuple[str, str]], key: str) -> str:
    found = values(section, key)
    assert len(found) == 1, f"{key}= set {len(found)} times"
    return found[0]


def seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|sec|min|ms)?", value)
    assert match, f"unexpected time span {value!r}"
    number, unit = float(match.group(1)), match.group(2) or "s"
    return number * {"s": 1, "sec": 1, "min": 60, "ms": 0.001}[unit]


@pytest.fixture(scope="module")
def unit() -> dict[str, list[tuple[str, str]]]:
    return parse_unit(UNIT.read_text())


def systemd_analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.fail("systemd-analyze not found: apt-get install systemd (.ci/run does)")
    return tool


def verify_copy(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    copy = tmp_path / "edgecam.service"
    copy.write_text(re.sub(r"^ExecStart=\S+", "ExecStart=/usr/bin/true", text, flags=re.M))
    return subprocess.run(
        [systemd_analyze(), "verify", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# Each hardening setting and the value it must have (see the comments in the unit for why).
HARDENING = {
    "DynamicUser": "yes",
    "SupplementaryGroups": "video",
    "DevicePolicy": "closed",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateMounts": "yes",
    "ProtectProc": "invisible",
    "NoNewPrivileges": "yes",
    "CapabilityBoundingSet": "",
    "AmbientCapabilities": "",
    "StateDirectory": "edgecam",
    "CacheDirectory": "edgecam",
    "ConfigurationDirectory": "edgecam",
    "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    "RestrictNamespaces": "yes",
    "RestrictRealtime": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "ProtectClock": "yes",
    "ProtectHostname": "yes",
    "RemoveIPC": "yes",
    "SystemCallArchitectures": "native",
    "UMask": "0077",
}


@pytest.mark.parametrize(("key", "expected"), sorted(HARDENING.items()))
def test_hardening_key(unit: dict[str, list[tuple[str, str]]], key: str, expected: str) -> None:
    assert one(unit["Service"], key) == expected


def test_system_calls_are_filtered(unit: dict[str, list[tuple[str, str]]]) -> None:
    assert values(unit["Service"], "SystemCallFilter") == [
        "@system-service",
        "~@privileged @resources",
    ]
    assert one(unit["Service"], "SystemCallErrorNumber") == "EPERM"


def test_only_camera_devices_are_allowed(unit: dict[str, list[tuple[str, str]]]) -> None:
    # /dev/video* + /dev/v4l-subdev* (video4linux), /dev/media*, /dev/dma_heap/* (libcamera)
    assert values(unit["Service"], "DeviceAllow") == [
        "char-video4linux rw",
        "char-media rw",
        "char-dma_heap rw",
    ]
    assert not values(unit["Service"], "PrivateDevices")  # would hide the camera nodes


def test_notify_watchdog_and_restart_policy(unit: dict[str, list[tuple[str, str]]]) -> None:
    service = unit["Service"]
    assert one(service, "Type") == "notify"
    assert one(service, "NotifyAccess") == "main"
    assert one(service, "Restart") == "on-failure"
    assert seconds(one(service, "RestartSec")) >= 1
    assert seconds(one(unit["Unit"], "StartLimitIntervalSec")) > 0
    assert int(one(unit["Unit"], "StartLimitBurst")) >= 1
    # Pings come from pipeline progress, at most every WatchdogSec/4: progress must be faster.
    defaults = load_config(None)
    assert seconds(one(service, "WatchdogSec")) / 4 > defaults.pipeline.progress_interval_s


def test_systemd_waits_longer_than_the_app_stop_deadline(
    unit: dict[str, list[tuple[str, str]]],
) -> None:
    defaults = load_config(None)
    stop = seconds(one(unit["Service"], "TimeoutStopSec"))
    assert stop > defaults.service.stop_deadline_s > defaults.pipeline.stop_timeout_s
    assert one(unit["Service"], "KillMode") == "mixed"


def test_paths_match_the_installer_and_config(unit: dict[str, list[tuple[str, str]]]) -> None:
    exec_start = one(unit["Service"], "ExecStart").split()
    assert exec_start == [str(DEFAULT_EXEC), "run", "--config", str(DEFAULT_CONFIG_PATH)]
    layout = Layout(Path("/"))
    assert f"EDGECAM_MODELS_DIR={layout.models_dir}" in values(unit["Service"], "Environment")
    assert one(unit["Install"], "WantedBy") == "multi-user.target"


def test_systemd_analyze_verify_is_clean(tmp_path: Path) -> None:
    done = verify_copy(tmp_path, UNIT.read_text())
    assert (done.returncode, done.stderr) == (0, "")


def test_verify_check_catches_a_misspelt_key(tmp_path: Path) -> None:
    """The control for the test above: verify exits 0 here, only stderr tells."""
    done = verify_copy(tmp_path, UNIT.read_text().replace("ProtectSystem=", "ProtectSytem="))
    assert "Unknown key" in done.stderr


def test_installed_unit_verifies_too(tmp_path: Path) -> None:
    from edgecam.cli import main

    assert (
        main(["service", "install", "--prefix", str(tmp_path), "--edgecam", "/usr/bin/true"]) == 0
    )
    installed = Layout(tmp_path).unit
    done = subprocess.run(
        [systemd_analyze(), "verify", str(installed)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")


def test_security_exposure_is_ok(tmp_path: Path) -> None:
    copy = tmp_path / "edgecam.service"
    copy.write_text(UNIT.read_text())
    done = subprocess.run(
        [systemd_analyze(), "security", "--offline=true", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    match = re.search(r"Overall exposure level for edgecam\.service: (\d+\.\d+) (\w+)", done.stdout)
    assert match, done.stdout + done.stderr
    exposure = float(match.group(1))
    print(f"systemd-analyze security exposure: {exposure} {match.group(2)}")
    assert exposure <= MAX_EXPOSURE
    assert match.group(2) in ("OK", "SAFE")


MDWE_RUNNER = """
import ctypes, runpy, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
    sys.exit(f"PR_SET_MDWE failed: errno {ctypes.get_errno()} (needs Linux >= 6.3)")
assert libc.prctl(66, 0, 0, 0, 0) == 1  # PR_GET_MDWE
sys.argv = ["edgecam", *sys.argv[1:]]
runpy.run_module("edgecam", run_name="__main__")
"""


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["litert", "tflite"])
@pytest.mark.parametrize(
    ("model", "kind"), [("ssd_mobilenet_v1", "detections"), ("mobilenet_v2", "classification")]
)
def test_models_run_under_memory_deny_write_execute(
    asset_models: Path, asset_video: Path, runtime: str, model: str, kind: str
) -> None:
    """MemoryDenyWriteExecute=yes is safe: the kernel's PR_SET_MDWE (same rule: no W+X
    mappings, no gaining exec) does not stop either runtime, XNNPACK included, or OpenCV."""
    assert ctypes.CDLL(None).prctl  # libc is reachable for the runner
    done = subprocess.run(
        [sys.executable, "-c", MDWE_RUNNER, "run", "--source", str(asset_video),
         "--model", model, "--models-dir", str(asset_models), "--runtime", runtime,
         "--max-frames", "5"],
        capture_output=True, text=True, timeout=240, check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 5
    assert all(f'"type":"{kind}"' in line for line in lines)


def test_path_with_a_space_is_one_quoted_word_that_systemd_accepts(tmp_path: Path) -> None:
    """Unquoted, `/opt/my venv/bin/edgecam` is the program `/opt/my` with an argument."""
    exe = tmp_path / "my venv 100%" / "bin" / "edgecam"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    template = UNIT.read_text()
    unit = render_unit(template, executable=exe, user=None)
    line = next(x for x in unit.splitlines() if x.startswith("ExecStart="))
    quoted = str(exe).replace("%", "%%")
    assert line == f'ExecStart="{quoted}" run --config /etc/edgecam/edgecam.toml'
    copy = tmp_path / "edgecam.service"
    copy.write_text(unit)
    done = subprocess.run(
        [systemd_analyze(), "verify", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
