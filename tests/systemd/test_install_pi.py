"""systemd/install-pi.sh: the Raspberry Pi installer's plan (--dry-run), for each kind of board.

The plan is what the script would run, in order, with the decisions that depend on the board:
which apt packages (32-bit adds Debian's numpy/OpenCV), whether the tflite-runtime extra is
installed (wheels exist up to Python 3.11 only), and which steps are already done (packages
installed per dpkg, a venv with --system-site-packages). A real install needs a Pi and root;
only the plan runs here.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import REPO

SCRIPT = REPO / "systemd" / "install-pi.sh"
BOOKWORM = 'PRETTY_NAME="Raspbian GNU/Linux 12 (bookworm)"\nVERSION_CODENAME=bookworm\n'
TRIXIE = 'PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nVERSION_CODENAME=trixie\n'


def plan(tmp_path: Path, *args: str, os_release: str = BOOKWORM) -> list[str]:
    release = tmp_path / "os-release"
    release.write_text(os_release)
    proc = subprocess.run(
        ["bash", str(SCRIPT), "--dry-run", "--os-release", str(release), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def commands(lines: list[str]) -> list[list[str]]:
    """The `would run:` commands, parsed back from their shell quoting."""
    prefix = "      would run: "
    return [shlex.split(line[len(prefix) :]) for line in lines if line.startswith(prefix)]


def installed(package: str) -> bool:
    done = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True, check=False
    )
    return done.stdout == "install ok installed"


def apt_install(cmds: list[list[str]]) -> list[str]:
    (cmd,) = [c for c in cmds if "install" in c and "apt-get" in c]
    return cmd[cmd.index("--no-install-recommends") + 1 :]


def test_64bit_bookworm_plan_in_order(tmp_path: Path) -> None:
    venv = tmp_path / "opt" / "venv"
    lines = plan(tmp_path, "--arch", "aarch64", "--python-version", "3.11", "--venv", str(venv))
    assert lines[0] == "edgecam install plan (dry run: nothing is changed)"
    assert lines[1] == "platform: aarch64, Raspbian GNU/Linux 12 (bookworm), Python 3.11"
    steps = [line.split("]")[1].split(":")[0].strip() for line in lines if line.startswith("[")]
    assert steps == ["apt", "venv", "pip", "models", "doctor", "service"]
    cmds = commands(lines)
    wanted = {"python3-venv", "python3-picamera2"}
    assert set(apt_install(cmds)) == {p for p in wanted if not installed(p)}
    assert ["python3", "-m", "venv", "--system-site-packages", str(venv)] in cmds
    assert [
        str(venv / "bin/python"),
        "-m",
        "pip",
        "install",
        "--upgrade",
        f"{REPO}[tflite]",
    ] in cmds
    edgecam = str(venv / "bin/edgecam")
    assert [
        edgecam,
        "models",
        "fetch",
        "ssd_mobilenet_v1",
        "--dest",
        "/var/lib/edgecam/models",
    ] in cmds
    assert [edgecam, "models", "fetch", "mobilenet_v2", "--dest", "/var/lib/edgecam/models"] in cmds
    assert cmds[-2][:4] == [edgecam, "doctor", "--models-dir", "/var/lib/edgecam/models"]
    assert cmds[-1] == [edgecam, "service", "install"]
    assert lines[-1] == "dry run: nothing was changed"
    assert not venv.exists()


def test_32bit_adds_debian_numpy_and_opencv(tmp_path: Path) -> None:
    cmds = commands(plan(tmp_path, "--arch", "armv7l", "--python-version", "3.11"))
    packages = {"python3-venv", "python3-picamera2", "python3-numpy", "python3-opencv"}
    assert set(apt_install(cmds)) == {p for p in packages if not installed(p)}
    assert any(c[-1].endswith("[tflite]") for c in cmds if "pip" in c)


def test_python_313_has_no_tflite_runtime_extra(tmp_path: Path) -> None:
    cmds = commands(
        plan(tmp_path, "--arch", "aarch64", "--python-version", "3.13", os_release=TRIXIE)
    )
    (pip,) = [c for c in cmds if "pip" in c]
    assert pip[-1] == str(REPO)  # ai-edge-litert only: tflite-runtime has no cp313 wheels


def test_existing_venv_is_kept_or_recreated(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(venv)],
        check=True,
    )
    lines = plan(tmp_path, "--venv", str(venv), "--arch", "aarch64")
    assert f"[2/6] venv: ok, {venv} exists with --system-site-packages" in lines
    assert not any("venv" in c for c in commands(lines) if c[0] == "python3")
    cfg = venv / "pyvenv.cfg"
    cfg.write_text(cfg.read_text().replace("= true", "= false"))
    cmds = commands(plan(tmp_path, "--venv", str(venv), "--arch", "aarch64"))
    assert ["rm", "-rf", str(venv)] in cmds
    assert ["python3", "-m", "venv", "--system-site-packages", str(venv)] in cmds


def test_models_from_a_local_mirror_and_no_service(tmp_path: Path) -> None:
    lines = plan(
        tmp_path,
        "--arch",
        "aarch64",
        "--models",
        "mobilenet_v2",
        "--models-from",
        "/mnt/usb/models",
        "--no-service",
    )
    fetches = [c for c in commands(lines) if "fetch" in c]
    assert [c[3:] for c in fetches] == [
        ["mobilenet_v2", "--dest", "/var/lib/edgecam/models", "--from", "/mnt/usb/models"]
    ]
    assert not any("service" in c for c in commands(lines))
    assert lines[-2].startswith("      would run: ") and "doctor" in lines[-2]


@pytest.mark.parametrize(
    ("args", "os_release", "message"),
    [
        (["--arch", "armv6l"], BOOKWORM, "no TFLite runtime publishes wheels"),
        (
            ["--arch", "aarch64"],
            'PRETTY_NAME="Debian 11"\nVERSION_CODENAME=bullseye\n',
            "glibc >= 2.34",
        ),
        (["--arch", "armv7l", "--python-version", "3.13"], TRIXIE, "use 64-bit Pi OS"),
        (["--venv", "/home/pi/venv"], BOOKWORM, "ProtectHome"),
        (["--bogus"], BOOKWORM, "unknown option --bogus"),
    ],
)
def test_impossible_installs_are_refused(
    tmp_path: Path, args: list[str], os_release: str, message: str
) -> None:
    release = tmp_path / "os-release"
    release.write_text(os_release)
    proc = subprocess.run(
        ["bash", str(SCRIPT), "--dry-run", "--os-release", str(release), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2 and message in proc.stderr and proc.stdout == ""


def test_planning_flags_need_dry_run_and_real_runs_need_root(tmp_path: Path) -> None:
    proc = subprocess.run(
        ["bash", str(SCRIPT), "--arch", "armv7l"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2 and "add --dry-run" in proc.stderr
    # As root, drop to nobody for this run; as any other user, the run is already unprivileged.
    drop = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    nobody = subprocess.run(
        [*(drop if os.geteuid() == 0 else []), "bash", str(SCRIPT)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert nobody.returncode == 2 and "run it with sudo" in nobody.stderr


def test_help_is_the_header() -> None:
    proc = subprocess.run(
        ["bash", str(SCRIPT), "--help"], capture_output=True, text=True, check=True
    )
    assert "sudo systemd/install-pi.sh" in proc.stdout and "--models-from DIR" in proc.stdout


def test_outside_a_checkout_the_source_must_be_given(tmp_path: Path) -> None:
    """edgecam is not on a package index yet: no silent `pip install edgecam` fallback."""
    lonely = tmp_path / "install-pi.sh"
    lonely.write_text(SCRIPT.read_text())
    release = tmp_path / "os-release"
    release.write_text(BOOKWORM)
    args = ["bash", str(lonely), "--dry-run", "--os-release", str(release), "--arch", "aarch64"]
    env = {k: v for k, v in os.environ.items() if k != "EDGECAM_SOURCE"}

    def run(extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            args, capture_output=True, text=True, timeout=60, check=False, env={**env, **extra}
        )

    refused = run({})
    assert refused.returncode == 2
    assert "pass --source" in refused.stderr and "not on a package index" in refused.stderr
    wheel = "/srv/edgecam-0.1.0-py3-none-any.whl"
    given = run({"EDGECAM_SOURCE": wheel})
    assert given.returncode == 0, given.stderr
    assert any(wheel in " ".join(cmd) for cmd in commands(given.stdout.splitlines()))
