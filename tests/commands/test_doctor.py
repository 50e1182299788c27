"""`edgecam doctor` end to end: a real process, the real runtimes probing a real model.

Exit status 0 when a working path exists, 1 when any check fails; `--json` carries every
check with its status, detail, fix and data, and the runtime auto-selection would use.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edgecam.runtime.cache import ChoiceCache
from tests.support.paths import REPO

NAMES = [
    "platform",
    "cpu",
    "config",
    "model",
    "runtime ai-edge-litert",
    "runtime tflite-runtime",
    "runtime choice",
    "xnnpack",
    "invoke",
    "execution",
    "source",
    "picamera2",
    "v4l2",
    "video group",
    "mqtt",
    "state dir",
    "systemd",
]


def doctor(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("STATE_DIRECTORY", "EDGECAM_MODELS_DIR")
    }
    env.update(
        PYTHONPATH=str(REPO),
        XDG_STATE_HOME=str(tmp_path / "state"),
        XDG_CACHE_HOME=str(tmp_path / "cache"),
    )
    return subprocess.run(
        [sys.executable, "-m", "edgecam", "doctor", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def checks_of(proc: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    report = json.loads(proc.stdout)
    return {c["name"]: c for c in report["checks"]}


def test_json_report_on_this_machine(asset_models: Path, tmp_path: Path) -> None:
    proc = doctor(tmp_path, "--json", "--model", "mobilenet_v2", "--models-dir", str(asset_models))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["ok"] is True and report["runtime"] == "litert"
    checks = checks_of(proc)
    assert list(checks) == NAMES
    assert all(c["status"] in ("ok", "warn") for c in checks.values())
    assert all(
        c["fix"]
        for c in checks.values()
        if c["status"] == "warn" and c["name"] != "cpu" and c["name"] != "systemd"
    )
    assert checks["runtime ai-edge-litert"]["data"]["probe"] == "ok"
    assert checks["runtime tflite-runtime"]["data"]["probe"] == "ok"  # doctor probes every one
    assert checks["invoke"]["data"]["first_ms"] > 0 and checks["invoke"]["data"]["warm_ms"] > 0
    assert checks["xnnpack"]["data"]["delegate_nodes"] > 0  # litert: int8 in XNNPACK
    # The probes primed the auto-selection cache: the next start needs no child process.
    (entry,) = ChoiceCache(tmp_path / "state" / "edgecam").entries("choice").values()
    assert entry["runtime"] == "litert"


def test_text_report_and_a_missing_model(tmp_path: Path) -> None:
    empty = tmp_path / "models"
    empty.mkdir()
    proc = doctor(tmp_path, "--model", "mobilenet_v2", "--models-dir", str(empty))
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    model = next(i for i, line in enumerate(lines) if line.startswith("fail  model"))
    assert "mobilenet_v2_1.0_224_quant.tflite" in lines[model]
    assert "fix: " in lines[model + 1] and "edgecam models fetch mobilenet_v2" in lines[model + 1]
    assert lines[-1].startswith("NOT OK: ")


@pytest.mark.slow
def test_invalid_config_and_unreachable_broker_fail(asset_models: Path, tmp_path: Path) -> None:
    with socket_port() as port:  # bound, never listening: connection refused
        config = tmp_path / "edgecam.toml"
        config.write_text(f'[mqtt]\nurl = "mqtt://127.0.0.1:{port}"\nconnect_timeout_s = 2\n')
        proc = doctor(
            tmp_path,
            "--json",
            "--config",
            str(config),
            "--model",
            "mobilenet_v2",
            "--models-dir",
            str(asset_models),
        )
    assert proc.returncode == 1
    checks = checks_of(proc)
    assert checks["config"]["status"] == "ok"
    assert checks["mqtt"]["status"] == "fail" and "cannot reach" in checks["mqtt"]["detail"]
    assert checks["state dir"]["status"] == "ok"  # needed for the outbox now: checked strictly
    config.write_text("[model]\nthreshold = 7\n")
    proc = doctor(
        tmp_path,
        "--json",
        "--config",
        str(config),
        "--model",
        "mobilenet_v2",
        "--models-dir",
        str(asset_models),
    )
    assert proc.returncode == 1
    bad = checks_of(proc)["config"]
    assert bad["status"] == "fail" and "model.threshold" in bad["detail"] and "7" in bad["detail"]


class socket_port:  # noqa: N801 - used as a context manager like a function
    """A loopback port that is bound but not listening, so connecting is refused."""

    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return int(self.sock.getsockname()[1])

    def __exit__(self, *_: object) -> None:
        self.sock.close()
