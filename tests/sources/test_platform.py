"""Board detection from device-tree content, and the picamera2 import check."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgecam.sources.platform import (
    board_model,
    is_raspberry_pi,
    picamera2_import_error,
)


@pytest.mark.parametrize(
    ("content", "model", "is_pi"),
    [
        (b"Raspberry Pi 5 Model B Rev 1.0\0", "Raspberry Pi 5 Model B Rev 1.0", True),
        (b"Raspberry Pi 4 Model B Rev 1.4\0", "Raspberry Pi 4 Model B Rev 1.4", True),
        (b"Raspberry Pi Compute Module 4 Rev 1.0\0", "Raspberry Pi Compute Module 4 Rev 1.0", True),
        (b"Raspberry Pi Zero 2 W Rev 1.0\0", "Raspberry Pi Zero 2 W Rev 1.0", True),
        (b"Pine64 RockPro64 v2.1\0", "Pine64 RockPro64 v2.1", False),  # another ARM board
        (b"NVIDIA Jetson Nano Developer Kit\0", "NVIDIA Jetson Nano Developer Kit", False),
        (b"Raspberry Pi 3 Model B Plus Rev 1.3", "Raspberry Pi 3 Model B Plus Rev 1.3", True),
        (b"\0", None, False),  # empty model string
        (b"\xff\xfe garbage\0", "\ufffd\ufffd garbage", False),  # undecodable bytes
    ],
)
def test_board_model_from_device_tree(
    tmp_path: Path, content: bytes, model: str | None, is_pi: bool
) -> None:
    path = tmp_path / "model"
    path.write_bytes(content)
    assert board_model(path) == model
    assert is_raspberry_pi(path) is is_pi


def test_missing_device_tree_is_no_board(tmp_path: Path) -> None:
    # x86 machines and most containers have no /proc/device-tree.
    assert board_model(tmp_path / "absent") is None
    assert is_raspberry_pi(tmp_path / "absent") is False


def test_unreadable_device_tree_is_no_board(tmp_path: Path) -> None:
    # A directory in place of the file: reading fails with an OSError, not a crash.
    assert board_model(tmp_path) is None


def test_picamera2_import_check_reports_why() -> None:
    assert picamera2_import_error("json") is None
    reason = picamera2_import_error("edgecam_no_such_module")
    assert reason is not None and reason.startswith("ModuleNotFoundError")
