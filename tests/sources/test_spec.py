"""The --source grammar: what each spec opens, and the one-line errors for bad ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgecam.errors import EXIT_USAGE, ConfigError, SourceError
from edgecam.secrets import mask_url_password
from edgecam.sources import ReconnectPolicy, open_source, parse_spec, resolve_default_source


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    return tmp_path / "model"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("picamera2", ("picamera2", "0")),  # the Pi camera, default number
        ("picamera2:1", ("picamera2", "1")),  # second CSI camera (Pi 5, CM4)
        ("PiCamera2:2", ("picamera2", "2")),  # case does not matter
        ("0", ("camera", "0")),  # V4L2 index
        ("007", ("camera", "7")),  # leading zeros are still index 7
        ("/dev/null", ("camera", "/dev/null")),  # any char device is tried as V4L2
        ("rtsp://cam.local:554/stream1", ("url", "rtsp://cam.local:554/stream1")),
        ("rtsps://cam/x", ("url", "rtsps://cam/x")),
        ("HTTP://cam/video.mjpg", ("url", "HTTP://cam/video.mjpg")),
        ("https://cam/x", ("url", "https://cam/x")),
    ],
)
def test_parse_spec_devices_and_urls(spec: str, expected: tuple[str, str]) -> None:
    assert parse_spec(spec) == expected


def test_parse_spec_files(tmp_path: Path, asset_images: Path, asset_video: Path) -> None:
    assert parse_spec(str(tmp_path)) == ("frames", str(tmp_path.resolve()))
    owl = asset_images / "owl.jpg"
    assert parse_spec(str(owl)) == ("image", str(owl.resolve()))
    upper = tmp_path / "SHOT.PNG"
    upper.write_bytes((asset_images / "bird.png").read_bytes())
    assert parse_spec(str(upper))[0] == "image"  # extension match ignores case
    assert parse_spec(str(asset_video)) == ("video", str(asset_video.resolve()))
    assert parse_spec(f"  {asset_video}  ")[0] == "video"  # stray spaces from a config file


def test_relative_file_named_like_the_camera_is_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "picamera2_clip.mp4").write_bytes(b"recorded")
    monkeypatch.chdir(tmp_path)
    assert parse_spec("picamera2_clip.mp4") == ("video", str(tmp_path / "picamera2_clip.mp4"))


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("picamera2:x", "picamera2:N"),  # malformed camera number
        ("rtmp://host/live", "unsupported URL scheme 'rtmp'"),
        ("/no/such/video.mp4", "'/no/such/video.mp4' does not exist"),
        ("/dev/video99", "does not exist"),  # no such device node: an ordinary missing path
    ],
)
def test_parse_spec_rejects_with_a_one_line_message(spec: str, needle: str) -> None:
    with pytest.raises(SourceError) as info:
        parse_spec(spec)
    assert needle in str(info.value)
    assert "\n" not in str(info.value)
    assert info.value.exit_code == EXIT_USAGE


def test_missing_path_error_lists_the_alternatives() -> None:
    with pytest.raises(SourceError) as info:
        open_source("missing-recording.mp4")
    text = str(info.value)
    assert "missing-recording.mp4" in text
    for alternative in ("VIDEO_FILE", "FRAMES_DIR", "IMAGE", "/dev/video0", "rtsp://"):
        assert alternative in text


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("rtsp://admin:s3cret@10.0.0.2:554/h264", "rtsp://admin:********@10.0.0.2:554/h264"),
        ("rtsp://admin:a:b@cam/x", "rtsp://admin:********@cam/x"),  # ':' inside the password
        ("rtsp://user@cam/x", "rtsp://user@cam/x"),  # no password: nothing to hide
        ("http://cam:8080/video", "http://cam:8080/video"),  # port is not a password
    ],
)
def test_mask_url_hides_passwords(url: str, masked: str) -> None:
    assert mask_url_password(url) == masked


def test_rejected_url_does_not_leak_its_password() -> None:
    with pytest.raises(SourceError) as info:
        parse_spec("rtmp://admin:s3cret@cam/live")
    assert "s3cret" not in str(info.value)


def test_default_source_off_a_pi_names_the_alternatives(model_file: Path) -> None:
    model_file.write_bytes(b"QEMU Virtual Machine\0")
    with pytest.raises(SourceError) as info:
        resolve_default_source(model_file)
    text = str(info.value)
    assert text.startswith("no camera source given and no Raspberry Pi camera here")
    for alternative in ("VIDEO_FILE", "FRAMES_DIR", "IMAGE", "0 (/dev/video0)", "rtsp://HOST"):
        assert alternative in text


def test_default_source_without_device_tree_is_not_a_pi(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no Raspberry Pi camera here"):
        resolve_default_source(tmp_path / "absent")


def test_default_source_on_a_pi_without_picamera2_says_how_to_install(model_file: Path) -> None:
    model_file.write_bytes(b"Raspberry Pi 4 Model B Rev 1.4\0")
    with pytest.raises(SourceError) as info:
        resolve_default_source(model_file, picamera2_module="edgecam_no_such_module")
    assert "python3-picamera2" in str(info.value)
    assert "--system-site-packages" in str(info.value)


def test_default_source_on_a_pi_with_picamera2_is_the_pi_camera(model_file: Path) -> None:
    model_file.write_bytes(b"Raspberry Pi 5 Model B Rev 1.0\0")
    # Any importable module stands in for picamera2: the check is "does it import".
    assert resolve_default_source(model_file, picamera2_module="json") == "picamera2:0"


def test_picamera2_spec_without_picamera2_is_a_clear_error() -> None:
    # This desktop has no libcamera: the adapter must say so, not raise ImportError.
    with pytest.raises(SourceError) as info:
        open_source("picamera2")
    assert "picamera2 cannot be imported" in str(info.value)
    assert "python3-picamera2" in str(info.value)


def test_camera_size_needs_both_sides(asset_video: Path) -> None:
    with pytest.raises(SourceError, match="both width and height"):
        open_source(str(asset_video), width=640)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"initial_s": 0}, "reconnect.initial_s"),
        ({"initial_s": 5, "max_s": 1}, "reconnect.max_s"),
        ({"give_up_s": -1}, "reconnect.give_up_s"),
    ],
)
def test_reconnect_policy_validates(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        ReconnectPolicy(**kwargs)
