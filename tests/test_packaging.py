"""What a package index would get: the sdist and wheel `python -m build` makes, installed.

The build runs the real backend (hatchling, `--no-isolation` so no download is needed for the
backend itself); the wheel is then built again from the sdist, which proves the sdist is
complete. `twine check --strict` validates the metadata and the README rendering. The wheel
goes into a fresh venv (dependencies from the index or pip's cache) and runs from a folder
outside the checkout: `--help`, `--version`, `models list`, a one-frame `detect` on an asset
photo, `config check` of the shipped example config and `service install --prefix` (the
shipped systemd unit, with the project URL filled in). Also: the version and the project URL
are each written in one place.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from edgecam import __version__
from edgecam.dirs import project_url
from edgecam.service.install import with_documentation
from tests.support.paths import REPO

WHEEL_DATA = {
    "edgecam/_data/manifest.toml",
    "edgecam/_data/systemd/edgecam.service",
    "edgecam/_data/systemd/edgecam.toml",
    "edgecam/py.typed",
    *(
        f"edgecam/schema/{k}.schema.json"
        for k in ("detections", "classification", "events", "stats", "status")
    ),
}


def run(*cmd: str | Path, cwd: Path | None = None, timeout: float = 600) -> str:
    done = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{' '.join(map(str, cmd))}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "build", "--no-isolation", "--outdir", out, REPO)
    return out


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sdist_and_wheel_pass_twine_and_carry_their_files(dist: Path) -> None:
    (wheel,) = dist.glob("*.whl")
    (sdist,) = dist.glob("*.tar.gz")
    assert wheel.name == f"edgecam-{__version__}-py3-none-any.whl"
    assert sdist.name == f"edgecam-{__version__}.tar.gz"
    checked = run(sys.executable, "-m", "twine", "check", "--strict", wheel, sdist)
    assert checked.count("PASSED") == 2
    names = set(zipfile.ZipFile(wheel).namelist())
    assert names >= WHEEL_DATA
    assert f"edgecam-{__version__}.dist-info/licenses/LICENSE" in names
    assert not any(n.startswith(("tests/", "tools/")) for n in names)
    metadata = zipfile.ZipFile(wheel).read(f"edgecam-{__version__}.dist-info/METADATA").decode()
    assert f"Version: {__version__}" in metadata
    assert f"Project-URL: Source, {project_url()}" in metadata
    with tarfile.open(sdist) as tar:
        members = {m.name.split("/", 1)[1] for m in tar.getmembers() if "/" in m.name}
    assert {
        "README.md",
        "CHANGELOG.md",
        "LICENSE",
        "pyproject.toml",
        "tests/assets.toml",
        "tests/data/expected_outputs.json",
        "tools/fetch_assets.py",
        "models/manifest.toml",
    } <= members
    assert not any(m.startswith((".venv", ".git/", "dist/")) for m in members)


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_the_wheel_installs_and_runs_in_a_fresh_venv(
    dist: Path, tmp_path: Path, asset_models: Path, asset_images: Path
) -> None:
    (wheel,) = dist.glob("*.whl")
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    run(venv / "bin/python", "-m", "pip", "install", "--quiet", wheel, timeout=1200)
    edgecam = venv / "bin" / "edgecam"
    outside = tmp_path / "elsewhere"  # not the checkout: only the installed package is found
    outside.mkdir()
    where = run(venv / "bin/python", "-c", "import edgecam; print(edgecam.__file__)", cwd=outside)
    assert where.startswith(str(venv))
    assert "run" in run(edgecam, "--help", cwd=outside)
    assert run(edgecam, "--version", cwd=outside).strip() == f"edgecam {__version__}"
    listed = run(edgecam, "models", "list", "--models-dir", asset_models, cwd=outside)
    assert "ssd_mobilenet_v1" in listed and "mobilenet_v2" in listed
    out = run(
        edgecam,
        "detect",
        "--models-dir",
        asset_models,
        "--model",
        "ssd_mobilenet_v1",
        asset_images / "pets.jpg",
        cwd=outside,
    )
    labels = [d["label"] for d in json.loads(out.splitlines()[0])["detections"]]
    assert labels.count("dog") == 2
    shipped = venv.glob("lib/python*/site-packages/edgecam/_data/systemd/edgecam.toml")
    run(edgecam, "config", "check", next(shipped), cwd=outside)
    root = tmp_path / "root"
    # The venv under /tmp could not be the service's (PrivateTmp hides /tmp from it), so the
    # staged unit names the standard place, as on a Pi.
    target = "/opt/edgecam/venv/bin/edgecam"
    run(edgecam, "service", "install", "--prefix", root, "--edgecam", target, cwd=outside)
    unit = (root / "etc/systemd/system/edgecam.service").read_text()
    assert f"Documentation={project_url()}#run-on-boot" in unit
    assert f"ExecStart={target} run" in unit
    assert (root / "etc/edgecam/edgecam.toml").is_file()


def test_the_version_is_written_once() -> None:
    pyproject = (REPO / "pyproject.toml").read_text()
    assert re.search(r'^dynamic = \["version"\]', pyproject, re.M)
    assert not re.search(r"^version\s*=", pyproject, re.M)
    assert re.search(
        rf"^## \[{re.escape(__version__)}\]", (REPO / "CHANGELOG.md").read_text(), re.M
    )


def test_the_project_url_is_written_once() -> None:
    url = project_url()
    assert url and url.startswith("https://")
    tracked = run("git", "ls-files", cwd=REPO).splitlines()
    found = []
    for name in tracked:
        path = REPO / name
        if not path.is_file() or path.suffix in (".tflite", ".jpg", ".png", ".mp4"):
            continue
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            # JSON Schema "$id"s are names, not links: they need not resolve anywhere.
            if url in line and '"$id"' not in line:
                found.append(name)
    assert found == ["pyproject.toml"]


def test_the_unit_gets_its_documentation_link_at_install() -> None:
    unit = "[Unit]\nDescription=x\nWants=y\n"
    assert with_documentation(unit, "https://example.org/e") == (
        "[Unit]\nDescription=x\nDocumentation=https://example.org/e#run-on-boot\nWants=y\n"
    )
    assert with_documentation(unit, None) == unit
    assert with_documentation("Documentation=keep\n" + unit, "https://x").startswith("Doc")
