"""`edgecam config check|show` through the real CLI entry point (exit codes, stdout/stderr)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from edgecam.cli import main
from edgecam.config import load_config
from tests.support.paths import REPO

EXAMPLE = REPO / "systemd" / "edgecam.toml"


def test_check_accepts_the_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check", str(EXAMPLE)]) == 0
    assert capsys.readouterr().out.strip().endswith(f"{EXAMPLE}: OK")


def test_check_reports_every_problem_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[mqtt]\nhost = 'b'\nport = 99999\n[modle]\nname = 'x'\n")
    assert main(["config", "check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: mqtt.port: 99999 is not a valid port (1–65535)" in err
    assert f"{bad}: modle: unknown section (did you mean 'model'?)" in err
    assert "Traceback" not in err


def test_check_applies_set_overrides(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check", str(EXAMPLE), "--set", "mqtt.qos=5"]) == 2
    assert (
        "command line: mqtt.qos: 5 is not a valid MQTT QoS (0, 1 or 2)" in capsys.readouterr().err
    )


def test_check_warns_about_missing_input_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f"[model]\nlabels_file = '{tmp_path / 'nope.txt'}'\n")
    assert main(["config", "check", str(config)]) == 0
    out = capsys.readouterr().out
    assert f"warning: model.labels_file: {tmp_path / 'nope.txt'} does not exist" in out


def test_show_prints_toml_that_loads_back_to_the_same_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "in.toml"
    source.write_text(
        "[mqtt]\nhost = 'broker'\nport = 1884\n[objects]\ndeny = ['tv']\n"
        "[objects.filters.person]\nmin_area = 0.01\n"
        "[[zones]]\nname = 'door'\npoints = [[0.1, 0.1], [0.9, 0.1], [0.5, 0.9]]\n"
    )
    assert main(["config", "show", "--config", str(source), "--set", "model.threads=2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"# edgecam effective config: {source} + 1 --set override(s)")
    assert "# threshold = (not set)" in out  # optional fields are listed too
    shown = tmp_path / "shown.toml"
    shown.write_text(out)
    tomllib.loads(out)  # valid TOML
    expected = load_config(source, {"model.threads": 2})
    assert load_config(shown) == expected


def test_show_masks_secrets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.toml"  # a password only ever comes from a file: --set refuses it
    config.write_text(
        "[mqtt]\nhost = 'b'\nusername = 'u'\npassword = 'topsecret'\n"
        "[source]\nspec = 'rtsp://admin:hunter2@cam/live'\n"
    )
    argv = ["config", "show", "--config", str(config), "--set", "model.threads=2"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "topsecret" not in out
    assert "hunter2" not in out
    assert 'password = "********"' in out
    assert 'spec = "rtsp://admin:********@cam/live"' in out


def test_set_password_is_refused_before_anything_runs(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["config", "show", "--set", "mqtt.host=b", "--set", "mqtt.username=u"]
    assert main([*argv, "--set", "mqtt.password=topsecret"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgecam: error: --set mqtt.password: a secret on the command line")
    assert "topsecret" not in err and "config file" not in err


def test_cli_process_bad_config_exits_2_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[service]\nstop_deadline_s = -1\n[logging]\nlevel = 'loud'\n")
    done = subprocess.run(
        [sys.executable, "-m", "edgecam", "config", "check", str(bad)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert "2 problems in the config" in done.stderr
    assert "service.stop_deadline_s: -1 is out of range (> 0 and ≤ 600)" in done.stderr
    assert "Traceback" not in done.stderr
