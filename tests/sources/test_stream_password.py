"""A stream password never on the command line: `source.password_file` / `password_env` fill in
`scheme://USER@host/`, a password inside a URL given on the command line is refused (it would
be visible to every user in `ps`), and the password shows up in no output or log line.

The camera is a real HTTP video server on 127.0.0.1 that demands basic authentication; OpenCV's
FFmpeg backend is the client, exactly as with an IP camera.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgecam.config import load_config
from edgecam.errors import ConfigError
from edgecam.secrets import with_url_password
from tests.support.http_video import VideoServer
from tests.support.paths import REPO

PASSWORD = "s3cr:et/@pw"  # characters a URL must quote


def _run(
    args: list[str], *, models: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "EDGECAM_MODELS_DIR": str(models), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "edgecam", "--log-level", "debug", *args],
        cwd=REPO,
        env=full,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_with_url_password_quotes_and_keeps_the_rest() -> None:
    assert (
        with_url_password("rtsp://admin@10.0.0.2:554/h264?x=1", PASSWORD)
        == "rtsp://admin:s3cr%3Aet%2F%40pw@10.0.0.2:554/h264?x=1"
    )
    with pytest.raises(ValueError, match="user name"):
        with_url_password("rtsp://10.0.0.2/h264", PASSWORD)


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"source.spec": "rtsp://admin:hunter2@10.0.0.2/h264"}, "source.password_file"),
        ({"mqtt.url": "mqtts://cam:hunter2@broker"}, "mqtt.password_file"),
    ],
    ids=["source", "mqtt"],
)
def test_a_password_in_a_command_line_url_is_refused(overrides: dict[str, str], words: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, overrides)
    text = str(info.value)
    assert "command line" in text and "`ps`" in text and words in text
    assert "hunter2" not in text


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        (
            {"spec": "rtsp://10.0.0.2/h264", "password_env": "CAM_PW"},
            "needs a stream URL with a user",
        ),
        ({"spec": "/dev/video0", "password_env": "CAM_PW"}, "needs a stream URL with a user"),
        (
            {"spec": "rtsp://a:b@10.0.0.2/h", "password_env": "CAM_PW"},
            "already has a password",
        ),
        (
            {"spec": "rtsp://a@h/", "password_env": "CAM_PW", "password_file": "/x"},
            "only one of",
        ),
        ({"spec": "rtsp://a@h/", "password_env": "1BAD"}, "not an environment variable name"),
    ],
)
def test_password_settings_must_make_sense(
    tmp_path: Path, table: dict[str, str], problem: str
) -> None:
    lines = [f"{k} = {v!r}".replace("'", '"') for k, v in table.items()]
    config = tmp_path / "edgecam.toml"
    config.write_text("[source]\n" + "\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=problem):
        load_config(config)


@pytest.mark.slow
def test_the_camera_opens_with_the_password_from_a_file(
    tmp_path: Path, asset_models: Path, asset_video: Path
) -> None:
    secret = tmp_path / "cam-password"
    secret.write_text(PASSWORD + "\n")
    secret.chmod(0o600)
    with VideoServer(asset_video, auth=("viewer", PASSWORD)) as camera:
        spec = camera.url.replace("http://", "http://viewer@")
        config = tmp_path / "edgecam.toml"
        config.write_text(
            f'[source]\nspec = "{spec}"\npassword_file = "{secret}"\n'
            '[model]\nname = "ssd_mobilenet_v1"\n[output]\nmax_frames = 3\n'
        )
        ok = _run(["run", "--config", str(config)], models=asset_models)
        assert ok.returncode == 0, ok.stderr[-2000:]
        assert len([line for line in ok.stdout.splitlines() if line.startswith("{")]) == 3
        quoted = "s3cr%3Aet%2F%40pw"
        for text in (ok.stdout, ok.stderr):
            assert PASSWORD not in text and quoted not in text
        # The same camera without the password: refused by the camera, one line, exit 2.
        denied = _run(["run", "--source", spec, "--max-frames", "3"], models=asset_models)
        assert denied.returncode == 2 and "Traceback" not in denied.stderr
        assert camera.refused >= 1


def test_the_command_line_refusal_is_one_line_and_exit_2(asset_models: Path) -> None:
    proc = _run(
        ["run", "--source", "rtsp://admin:hunter2@127.0.0.1:9/h264", "--max-frames", "1"],
        models=asset_models,
    )
    assert proc.returncode == 2
    assert "hunter2" not in proc.stderr and "Traceback" not in proc.stderr
    assert "source.password_file" in proc.stderr
