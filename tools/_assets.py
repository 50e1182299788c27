"""The test-asset manifest (tests/assets.toml) and where the tests find the assets.

One rule, used by the tests (tests/support/paths.py), `.ci/run` and the fetch command:
``$EDGECAM_ASSETS`` if set, else ``../shared/assets`` next to the checkout when it exists
(this workplace), else the cache ``python -m tools.fetch_assets`` fills
(``$EDGECAM_TEST_CACHE/assets``, default ``~/.cache/edgecam-tests/assets``).
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgecam.errors import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
MANIFEST = REPO / "tests" / "assets.toml"
SHARED = REPO.parent / "shared" / "assets"
FETCH_COMMAND = "python -m tools.fetch_assets"
_KEYS = {"path", "url", "size", "sha256", "convert", "pixels", "bundled", "optional", "note"}


@dataclass(frozen=True, slots=True)
class Pixels:
    """What a losslessly converted image must decode to (OpenCV BGR, uint8)."""

    width: int
    height: int
    sha256: str


@dataclass(frozen=True, slots=True)
class AssetFile:
    """One [[file]] of the manifest (keys documented at the top of tests/assets.toml)."""

    path: str
    size: int
    sha256: str
    licence: str
    url: str | None = None
    convert: str | None = None
    pixels: Pixels | None = None
    bundled: str | None = None
    optional: bool = False
    note: str | None = None


def _entry(raw: Mapping[str, Any], where: str) -> AssetFile:
    unknown = sorted(set(raw) - _KEYS - {"licence"})
    if unknown:
        raise UsageError(f"{where}: unknown key(s) {', '.join(unknown)}")
    try:
        pixels = raw.get("pixels")
        entry = AssetFile(
            path=str(raw["path"]),
            size=int(raw["size"]),
            sha256=str(raw["sha256"]),
            licence=str(raw["licence"]),
            url=raw.get("url"),
            convert=raw.get("convert"),
            pixels=Pixels(int(pixels["width"]), int(pixels["height"]), str(pixels["sha256"]))
            if pixels
            else None,
            bundled=raw.get("bundled"),
            optional=bool(raw.get("optional", False)),
            note=raw.get("note"),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"{where}: missing or bad field {exc}") from None
    if entry.convert not in (None, "png", "jpeg"):
        raise UsageError(f"{where}: convert must be png or jpeg, got {entry.convert!r}")
    if entry.convert == "png" and entry.pixels is None:
        raise UsageError(f"{where}: convert = png needs pixels = {{width, height, sha256}}")
    if (entry.url is None) == (entry.bundled is None):
        raise UsageError(f"{where}: give exactly one of url and bundled")
    return entry


def load_manifest(path: Path = MANIFEST) -> list[AssetFile]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"{path}: cannot read the asset manifest: {exc}") from None
    files = data.get("file")
    if data.get("schema") != 1 or not isinstance(files, list):
        raise UsageError(f"{path}: expected schema = 1 and [[file]] tables")
    return [_entry(raw, f"{path.name}: file {i + 1}") for i, raw in enumerate(files)]


def cache_root(environ: Mapping[str, str] | None = None) -> Path:
    """Where test downloads live: $EDGECAM_TEST_CACHE, else $XDG_CACHE_HOME/edgecam-tests,
    else ~/.cache/edgecam-tests."""
    env = os.environ if environ is None else environ
    if env.get("EDGECAM_TEST_CACHE"):
        return Path(env["EDGECAM_TEST_CACHE"])
    xdg = env.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "edgecam-tests"


def cache_assets_dir(environ: Mapping[str, str] | None = None) -> Path:
    return cache_root(environ) / "assets"


def locate(environ: Mapping[str, str] | None = None) -> tuple[Path, str]:
    """(asset folder the tests use, why that one)."""
    env = os.environ if environ is None else environ
    if env.get("EDGECAM_ASSETS"):
        return Path(env["EDGECAM_ASSETS"]), "EDGECAM_ASSETS"
    if SHARED.is_dir():
        return SHARED, "the shared folder next to the checkout"
    return cache_assets_dir(env), "the test cache"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def decoded_pixels(data: bytes) -> Pixels | None:
    """Width, height and sha256 of the BGR pixels OpenCV decodes (None: not an image)."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        return None
    array = np.ascontiguousarray(image)
    return Pixels(array.shape[1], array.shape[0], hashlib.sha256(array.tobytes()).hexdigest())


def problem(root: Path, entry: AssetFile, *, deep: bool) -> str | None:
    """Why ``root/entry.path`` is not the manifest's file (None: it is). deep: hash it too."""
    path = root / entry.path
    if not path.is_file():
        return "missing"
    if entry.convert == "png":  # our own PNG of the BMP: same pixels, other bytes
        if not deep:
            return None
        if sha256_of(path) == entry.sha256 or decoded_pixels(path.read_bytes()) == entry.pixels:
            return None
        return "pixels differ from the manifest"
    if path.stat().st_size != entry.size:
        return f"{path.stat().st_size} bytes, manifest says {entry.size}"
    if deep and sha256_of(path) != entry.sha256:
        return "sha256 differs from the manifest"
    return None


def missing_required(root: Path, *, deep: bool = False) -> list[str]:
    """``path: why`` for every required file that is not in order under ``root``."""
    out = []
    for entry in load_manifest():
        if entry.optional:
            continue
        why = problem(root, entry, deep=deep)
        if why is not None:
            out.append(f"{entry.path}: {why}")
    return out
