"""`edgecam run` end to end on recorded frames with the real detector.

JSON lines out; user mistakes give one-line errors and exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from edgecam.cli import main
from tests.support.paths import REPO


@pytest.fixture()
def models_env(monkeypatch: pytest.MonkeyPatch, asset_models: Path) -> Path:
    monkeypatch.setenv("EDGECAM_MODELS_DIR", str(asset_models))
    return asset_models


@pytest.fixture(scope="module")
def frames_dir(tmp_path_factory: pytest.TempPathFactory, asset_video: Path) -> Path:
    """Every 10th frame of the asset video as JPEGs: a recorded-frames directory."""
    out = tmp_path_factory.mktemp("frames")
    cap = cv2.VideoCapture(str(asset_video))
    index = 0
    while index < 400:
        ok, frame = cap.read()
        if not ok:
            break
        if index % 10 == 0:
            cv2.imwrite(str(out / f"frame_{index}.jpg"), frame)
        index += 1
    cap.release()
    return out


def test_run_video_prints_one_line_per_frame(
    models_env: Path, asset_video: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(
        ["run", "--model", "ssd_mobilenet_v1", "--source", str(asset_video), "--max-frames", "12"]
    )
    assert rc == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [p["seq"] for p in lines] == list(range(12))
    assert [p["frame_seq"] for p in lines] == list(range(12))
    assert all(p["frame"] == {"width": 768, "height": 432} for p in lines)
    assert all(p["model"] == "ssd_mobilenet_v1" for p in lines)


def test_run_frames_dir_in_name_order_finds_people(
    models_env: Path, frames_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(["run", "-m", "ssd_mobilenet_v1", "-s", str(frames_dir), "--labels", "person"])
    assert rc == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == len(list(frames_dir.glob("*.jpg")))
    labels = {d["label"] for p in lines for d in p["detections"]}
    assert labels == {"person"}  # the filter keeps only persons, and the video has some
    assert not lines[0]["detections"]  # frame 0 of the video is empty


def test_run_detections_only_to_file(models_env: Path, frames_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "dets.jsonl"
    rc = main(
        [
            "run",
            "-m",
            "ssd_mobilenet_v1",
            "-s",
            str(frames_dir),
            "--detections-only",
            "-o",
            str(out),
        ]
    )
    assert rc == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines and all(p["detections"] for p in lines)
    assert [p["seq"] for p in lines] == list(range(len(lines)))


def _cli(*args: str, env_models: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EDGECAM_MODELS_DIR": str(env_models)}
    return subprocess.run(
        [sys.executable, "-m", "edgecam", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        # a model name that is not in the manifest
        (["run", "--model", "yolo9000", "--source", "x.mp4"], "yolo9000"),
        # a source path that does not exist
        (
            ["run", "--model", "ssd_mobilenet_v1", "--source", "/nonexistent/clip.mp4"],
            "/nonexistent/clip.mp4",
        ),
        # threshold outside 0..1
        (["run", "--model", "ssd_mobilenet_v1", "--threshold", "1.5"], "model.threshold"),
        # a label the model does not know
        (["detect", "--labels", "unicorn", "IMG"], "unicorn"),
        # a classifier used for detection
        (["detect", "--model", "mobilenet_v2", "IMG"], "edgecam classify"),
        # ssdlite_v2 has no prebuilt file: say how to build it
        (["run", "--model", "ssdlite_v2", "--source", "IMG"], "tools.convert_ssd"),
        # config override with a bad key
        (["run", "--set", "model.nmae=x"], "nmae"),
        # issue 14 item 4: a secret in argv is visible in `ps`, as a password in a URL is
        (["run", "--set", "mqtt.password=hunter2", "-s", "IMG"], "a secret on the command line"),
        # one device-id rule, refusing: these were rewritten to a-b, edgecam, cam-, x*64
        (["run", "--device-id", "a/b", "-s", "IMG"], "'a/b' is not a device id"),
        (["run", "--device-id", "#", "-s", "IMG"], "'#' is not a device id"),
        (["run", "--device-id", "cam\x1b[2J", "-s", "IMG"], "'cam\\x1b[2J' is not a device id"),
        (["run", "--device-id", "x" * 65, "-s", "IMG"], "is not a device id"),
        # issue 14 item 5: each was a traceback, exit 1, or silently accepted
        (["run", "-o", "TMPDIR", "-s", "IMG"], "is a directory, expected a file"),
        (["run", "--models-dir", "FILE", "-s", "IMG"], "--models-dir (model.models_dir)"),
        (["run", "--mqtt", "mqtt://[::1", "-s", "IMG"], "unclosed '[' around an IPv6 address"),
        (["run", "--config", "LATIN1"], "not UTF-8 text (byte 0xe9"),
        (["run", "--config", "/dev/zero"], "is a character device, not a regular file"),
        (["run", "-s", "GARBAGE"], "not a readable video"),
        (["classify", "--labels-file", "/dev/zero", "IMG"], "cannot read label file"),
        (["classify", "--max-pixels", "1000", "IMG"], "over the limit of 0.001"),
        # found by trying every sub-command with hostile arguments
        (["run", "-s", "/dev/zero"], "cannot open /dev/zero as a V4L2 capture device"),
        (["detect", "--annotate", "FILE", "IMG", "IMG"], "not a directory (several images"),
        (["detect", "--annotate", "FIFO", "IMG"], "a named pipe or socket, expected a file"),
        (["models", "info", "/dev/zero"], "cannot read model file: is a character device"),
        (["doctor", "--timeout", "nan"], "--timeout nan: expected a positive number"),
        (["service", "install", "--prefix", "FILE", "--dry-run"], "--prefix"),
    ],
)
def test_user_mistakes_exit_2_with_one_line(
    args: list[str], needle: str, asset_models: Path, asset_images: Path, tmp_path: Path
) -> None:
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes(b"[output]\ndevice_id = 'caf\xe9'\n")
    garbage = tmp_path / "clip.mp4"
    garbage.write_bytes(b"not a video at all\n")
    fifo = tmp_path / "out.jpg"
    os.mkfifo(fifo)
    placeholders = {
        "IMG": str(asset_images / "bird.png"),
        "TMPDIR": str(tmp_path),
        "FILE": str(REPO / "pyproject.toml"),
        "LATIN1": str(latin1),
        "GARBAGE": str(garbage),
        "FIFO": str(fifo),
    }
    proc = _cli(*(placeholders.get(a, a) for a in args), env_models=asset_models)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert needle in proc.stderr
    assert proc.stderr.startswith("edgecam: error:")
    assert len(proc.stderr.splitlines()) == 1, proc.stderr  # no FFmpeg/OpenCV noise either


def test_runtime_choice_is_cached_in_the_configured_state_dir(
    models_env: Path,
    asset_images: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`service.state_dir` holds everything edgecam keeps, the runtime choice included, not
    only what `doctor` checks; the environment's state dir stays untouched."""
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "from-env"))
    state = tmp_path / "configured"
    argv = ["run", "-m", "ssd_mobilenet_v1", "-s", str(asset_images / "pets.jpg")]
    rc = main([*argv, "--runtime", "auto", "--set", f"service.state_dir={state}"])
    assert rc == 0
    assert len(capsys.readouterr().out.splitlines()) == 1
    cache = json.loads((state / "runtime-choice.json").read_text())
    assert json.dumps(cache).count("litert") >= 1
    assert not (tmp_path / "from-env").exists()
