"""Fetch and verify the test assets (tests/assets.toml) into a cache, for anyone outside.

    python -m tools.fetch_assets                    # download from the official URLs
    python -m tools.fetch_assets --from DIR         # copy from a folder laid out the same way
    python -m tools.fetch_assets --mirror-url URL   # download from a mirror of the URLs
    python -m tools.fetch_assets --check            # is the folder the tests use complete?

Every file is checked (size and sha256; for the images the tests use as PNG copies of
upstream BMPs, the decoded pixels) before it is renamed into place, so an interrupted or
wrong download never leaves a file that looks right. Files already present and correct are
left alone, so running it again only fetches what is missing. A mirror serves each URL's
host and path under its own base: https://raw.githubusercontent.com/a/b/c is fetched from
``<mirror>/raw.githubusercontent.com/a/b/c`` (plain http only to this machine).
Exit status: 0 all required files ready, 1 some could not be fetched, 2 usage error.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

import cv2
import numpy as np

from edgecam.errors import EXIT_FAILURE, EXIT_OK, FetchError, UsageError
from edgecam.models.fetch import download
from edgecam.models.manifest import is_allowed_url
from tools._assets import (
    FETCH_COMMAND,
    REPO,
    AssetFile,
    cache_assets_dir,
    decoded_pixels,
    load_manifest,
    locate,
    missing_required,
    problem,
)
from tools._common import run_cli


@dataclass(frozen=True)
class Source:
    """Where bytes come from: a local folder, a mirror base URL, or the official URLs."""

    folder: Path | None = None
    mirror_url: str | None = None

    def url_for(self, url: str) -> str:
        if self.mirror_url is None:
            return url
        parts = urlsplit(url)
        return f"{self.mirror_url.rstrip('/')}/{parts.hostname}{parts.path}"


def _atomic_write(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _copy_checked(source: Path, entry: AssetFile, target: Path) -> None:
    if not source.is_file():
        raise FetchError(f"{entry.path}: not found at {source}")
    data = source.read_bytes()
    staged = target.parent / f".{target.name}.check"
    _atomic_write(staged, data)
    try:
        why = problem(staged.parent, replace(entry, path=staged.name), deep=True)
        if why is not None:
            raise FetchError(f"{entry.path}: {source}: {why}; nothing saved")
        os.replace(staged, target)
    finally:
        staged.unlink(missing_ok=True)


def _download_converted(url: str, entry: AssetFile, target: Path, loopback: bool) -> None:
    """The upstream BMP, checked by its pixels, saved as the lossless PNG the tests use."""
    assert entry.pixels is not None
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".fetch-") as tmp:
        raw = Path(tmp) / "upstream"
        download(url, raw, sha256=None, size=None, allow_loopback_http=loopback, hint=_HINT)
        pixels = decoded_pixels(raw.read_bytes())
        if pixels != entry.pixels:
            raise FetchError(
                f"{entry.path}: {url} decodes to {pixels}, expected {entry.pixels}; nothing saved"
            )
        image = cv2.imread(str(raw), cv2.IMREAD_COLOR)
        ok, png = cv2.imencode(".png", np.ascontiguousarray(image))
        if not ok:
            raise FetchError(f"{entry.path}: PNG encoding failed")
    _atomic_write(target, bytes(png))


_HINT = f"no network? fetch from a copy: {FETCH_COMMAND} --from DIR"


def fetch_one(entry: AssetFile, dest: Path, source: Source) -> str:
    """Get one file into ``dest``; returns what was done (FetchError if it cannot be)."""
    target = dest / entry.path
    target.parent.mkdir(parents=True, exist_ok=True)
    if problem(dest, entry, deep=True) is None:
        return "present"
    if entry.bundled is not None:
        _copy_checked(REPO / entry.bundled, entry, target)
        return "copied from the repository"
    if source.folder is not None:
        _copy_checked(source.folder / entry.path, entry, target)
        return f"copied from {source.folder}"
    assert entry.url is not None
    if entry.convert == "jpeg":
        raise FetchError(f"{entry.path}: no download reproduces it ({entry.note}); use --from DIR")
    url = source.url_for(entry.url)
    loopback = source.mirror_url is not None
    if entry.convert == "png":
        _download_converted(url, entry, target, loopback)
        return f"downloaded {url} and converted to PNG (pixels verified)"
    download(
        url,
        target,
        sha256=entry.sha256,
        size=entry.size,
        allow_loopback_http=loopback,
        progress=sys.stderr.isatty(),
        hint=_HINT,
    )
    return f"downloaded {url}"


def fetch_all(
    dest: Path, source: Source, *, include_optional: bool = False
) -> tuple[list[str], list[str]]:
    """(lines done, errors) over the manifest; optional files only when asked."""
    done, errors = [], []
    _remove_stale_parts(dest)
    for entry in load_manifest():
        if entry.optional and not include_optional:
            continue
        try:
            done.append(f"{entry.path}: {fetch_one(entry, dest, source)}")
        except (FetchError, OSError) as exc:
            errors.append(f"{entry.path}: {exc}" if isinstance(exc, OSError) else str(exc))
    return done, errors


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=FETCH_COMMAND, description=(__doc__ or "").split("\n\n")[0])
    src = p.add_mutually_exclusive_group()
    src.add_argument("--from", dest="folder", type=Path, help="copy from this asset folder")
    src.add_argument("--mirror-url", help="download from a mirror of the official URLs")
    p.add_argument("--dest", type=Path, help=f"cache folder (default: {cache_assets_dir()})")
    p.add_argument("--all", action="store_true", help="optional files too")
    p.add_argument(
        "--check",
        action="store_true",
        help="only verify the folder the tests use (or --dest); print it; exit 1 if incomplete",
    )
    return p


def _check(dest: Path | None) -> int:
    root, why = (dest, "--dest") if dest else locate()
    missing = missing_required(root, deep=True)
    if missing:
        print(
            f"test assets incomplete in {root} ({why}):\n  " + "\n  ".join(missing) + "\n"
            f"fetch them: {FETCH_COMMAND}   (or set EDGECAM_ASSETS to a complete folder)",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    print(root)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.check:
        return _check(args.dest)
    if args.mirror_url and not is_allowed_url(args.mirror_url, loopback_http=True):
        raise UsageError(f"--mirror-url {args.mirror_url}: use https:// (http only to 127.0.0.1)")
    if args.folder is not None and not args.folder.is_dir():
        raise UsageError(f"--from {args.folder}: not a directory")
    dest = args.dest or cache_assets_dir()
    done, errors = fetch_all(dest, Source(args.folder, args.mirror_url), include_optional=args.all)
    for line in done:
        print(line)
    for line in errors:
        print(f"error: {line}", file=sys.stderr)
    if errors:
        print(f"{len(errors)} file(s) not fetched into {dest}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"test assets ready in {dest}; tests use it when ../shared/assets does not exist")
    return EXIT_OK


def _remove_stale_parts(dest: Path) -> None:
    """Leftovers of a killed run (never renamed into place) are just deleted."""
    for part in dest.rglob(".*.part"):
        part.unlink(missing_ok=True)
    for tmp in dest.rglob(".fetch-*"):
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(run_cli(main, None))
