"""Fixtures for the emulated ARM runs: one edgecam wheel per session, one userland per arch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import REPO

from .emulation import Emulated, emulated


@pytest.fixture(scope="session")
def edgecam_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This checkout as a wheel: the ARM side installs it the way a user would."""
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(REPO)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    wheels = list(out.glob("edgecam-*.whl"))
    if done.returncode != 0 or len(wheels) != 1:
        pytest.fail(f"building the edgecam wheel failed: {done.stderr[-2000:]}", pytrace=False)
    return wheels[0]


@pytest.fixture(scope="session")
def aarch64(tmp_path_factory: pytest.TempPathFactory, edgecam_wheel: Path) -> Emulated:
    return emulated("aarch64", tmp_path_factory, edgecam_wheel)


@pytest.fixture(scope="session")
def armv7l(tmp_path_factory: pytest.TempPathFactory, edgecam_wheel: Path) -> Emulated:
    return emulated("armv7l", tmp_path_factory, edgecam_wheel)
