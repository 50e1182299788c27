"""Where are we running? Raspberry Pi detection, picamera2 availability, default source.

The default source depends on the answer: the Pi camera on a Pi that has picamera2, a clear
error elsewhere. Both checks take their inputs as parameters so tests can feed fake device-tree
content instead of patching builtins.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

from edgecam.errors import SourceError

log = logging.getLogger(__name__)

# The device tree names the board; /proc/device-tree links to /sys/firmware/devicetree/base.
DEVICE_TREE_MODEL = Path("/proc/device-tree/model")
# What to suggest when there is no camera: the other kinds of --source.
ALTERNATIVES = "VIDEO_FILE | FRAMES_DIR | IMAGE | 0 (/dev/video0) | rtsp://HOST/PATH"


def board_model(model_path: Path = DEVICE_TREE_MODEL) -> str | None:
    """The board name from the device tree ("Raspberry Pi 5 Model B Rev 1.0"), None if unknown.

    The file is NUL-terminated and absent on x86 and in most containers.
    """
    try:
        raw = model_path.read_bytes()
    except OSError:
        return None
    text = raw.split(b"\0", 1)[0].decode("utf-8", errors="replace").strip()
    return text or None


def is_raspberry_pi(model_path: Path = DEVICE_TREE_MODEL) -> bool:
    """True on any Raspberry Pi board (including Compute Modules and Pi 400/500)."""
    model = board_model(model_path)
    return model is not None and model.startswith("Raspberry Pi")


def picamera2_import_error(module: str = "picamera2") -> str | None:
    """None if `module` imports, else why not (one line).

    A real import, not just a spec lookup: pip's picamera2 installs fine on a desktop and then
    fails on `import libcamera`, whose bindings only ship with Raspberry Pi OS.
    """
    try:
        importlib.import_module(module)
    except Exception as exc:  # ImportError, or anything its import-time code raises
        log.debug("cannot import %s: %r", module, exc)
        return f"{type(exc).__name__}: {exc}"
    return None


def resolve_default_source(
    model_path: Path = DEVICE_TREE_MODEL, picamera2_module: str = "picamera2"
) -> str:
    """The spec used when none is given: the Pi camera where there is one, else SourceError."""
    if not is_raspberry_pi(model_path):
        raise SourceError(
            "no camera source given and no Raspberry Pi camera here",
            hint=f"use --source {ALTERNATIVES}",
        )
    error = picamera2_import_error(picamera2_module)
    if error is not None:
        raise SourceError(
            f"no camera source given and picamera2 cannot be imported on this Raspberry Pi "
            f"({error})",
            hint="sudo apt install python3-picamera2 and create the venv with "
            f"--system-site-packages, or use --source {ALTERNATIVES}",
        )
    return "picamera2:0"
