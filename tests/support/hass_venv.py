"""A venv with the pinned Home Assistant, for the discovery validator (tests/support/hass/).

Home Assistant needs Python 3.13 (the project runs on 3.10+), so it gets its own venv, built
once into the test cache and keyed by the requirement, the constraints and the interpreter
version: reruns reuse it, a bump of the pin builds a new one. The first build downloads
~100 packages from PyPI and takes about 3 minutes (602 MB). A half-built venv (interrupted
install) has no completion marker and is rebuilt; a lock file keeps two test processes from
building the same venv at once.

No suitable Python is a failure with what to install, never a skip: a green run that did not
validate anything would prove nothing.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.paths import cache_root

HERE = Path(__file__).resolve().parent / "hass"
REQUIREMENTS = HERE / "requirements.txt"
CONSTRAINTS = HERE / "constraints.txt"
#: Home Assistant 2025.4.x declares Requires-Python >=3.13.0; 3.14 is untested with its pins.
WANTED = (3, 13)
INSTALL_HINT = (
    "the Home Assistant validator needs Python 3.13: install it (`pyenv install 3.13.0`, or "
    "`apt-get install python3.13` on Debian 13) or point EDGECAM_HASS_PYTHON at a python3.13"
)


def _version(python: str) -> tuple[int, int, int] | None:
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)", out)
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


def _pyenv_pythons() -> list[str]:
    """python3 of every pyenv-installed 3.13.x, newest first."""
    pyenv = shutil.which("pyenv")
    if pyenv is None:
        return []
    try:
        root = subprocess.run(
            [pyenv, "root"], capture_output=True, text=True, timeout=60, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return []
    versions = Path(root) / "versions"
    found = [p for p in versions.glob("3.13.*") if re.fullmatch(r"3\.13\.\d+", p.name)]
    found.sort(key=lambda p: int(p.name.split(".")[2]), reverse=True)
    return [str(p / "bin" / "python3") for p in found]


def find_python() -> tuple[str, tuple[int, int, int]]:
    """A Python 3.13 interpreter: $EDGECAM_HASS_PYTHON, pyenv's 3.13.x, python3.13 on PATH."""
    explicit = os.environ.get("EDGECAM_HASS_PYTHON")
    candidates = [explicit] if explicit else [*_pyenv_pythons(), "python3.13"]
    for python in candidates:
        version = _version(python)
        if version is not None and version[:2] == WANTED:
            return python, version
    where = f"EDGECAM_HASS_PYTHON={explicit} is not a Python 3.13" if explicit else "none found"
    pytest.fail(f"{INSTALL_HINT} ({where})", pytrace=False)


def _key(version: tuple[int, int, int]) -> str:
    digest = hashlib.sha256()
    digest.update(".".join(map(str, version)).encode())
    digest.update(REQUIREMENTS.read_bytes())
    digest.update(CONSTRAINTS.read_bytes())
    return digest.hexdigest()[:12]


def hass_python(timeout_s: float = 1200.0) -> Path:
    """The venv's python, building the venv first if this cache has none yet."""
    python, version = find_python()
    venv = cache_root() / f"hass-venv-{_key(version)}"
    marker = venv / ".edgecam-complete"
    venv.parent.mkdir(parents=True, exist_ok=True)
    with (venv.parent / f"{venv.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test process may be building it
        if not marker.exists():
            shutil.rmtree(venv, ignore_errors=True)
            _build(python, venv, timeout_s)
            marker.write_text(f"python {'.'.join(map(str, version))}\n")
    return venv / "bin" / "python"


def _build(python: str, venv: Path, timeout_s: float) -> None:
    steps = [
        [python, "-m", "venv", str(venv)],
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
            str(REQUIREMENTS),
            "-c",
            str(CONSTRAINTS),
        ],
    ]
    for cmd in steps:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
        if done.returncode != 0:
            shutil.rmtree(venv, ignore_errors=True)
            tail = (done.stderr or done.stdout).strip().splitlines()[-15:]
            pytest.fail(
                f"building the Home Assistant venv failed ({' '.join(cmd[:4])} ...):\n"
                + "\n".join(tail),
                pytrace=False,
            )
