"""Where convert_ssd's weights and settings come from, checked before anything is built.

Why a separate step: the official release is downloaded (``--official``) or read from a file
fetched elsewhere (``--tarball``) or from an unpacked directory (``--checkpoint``); in every
case the files are verified against the pinned release before TensorFlow builds anything,
so a bad download ends in one line within seconds, not in a wrong model after a minute.
A checkpoint of one's own training (``--own-checkpoint``) skips the pin, but TensorFlow
still checks every tensor against the CRC32C in its own index.
"""

from __future__ import annotations

import argparse
import logging
import os
import tarfile
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

from edgecam.errors import ModelError, UsageError
from tools import _release
from tools._common import sha256_file
from tools._pipeline_config import SSDSettings, read_pipeline_config
from tools._release import Release, Verification

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Source:
    """prefix: the checkpoint (``…/model.ckpt``) or None (``--from-tflite`` / ``--random``);
    release/verification: set when the files are the pinned official release."""

    prefix: Path | None
    settings: SSDSettings | None
    release: Release | None = None
    verification: Verification | None = None

    @property
    def meta(self) -> Path | None:
        """The checkpoint's own TF1 graph, when it came with one (the fidelity reference)."""
        if self.prefix is None:
            return None
        meta = Path(f"{self.prefix}.meta")
        return meta if meta.is_file() else None

    def describe(self) -> str:
        """One line saying what was verified."""
        v = self.verification
        if v is None:
            return f"{self.prefix}: not verified"
        if self.release is None:
            return f"{self.prefix}: own checkpoint, {v.tensors} tensors match their CRC32C"
        r = self.release
        line = (
            f"verified {r.folder}: model.ckpt.index sha256 {v.index_sha256}, pipeline.config "
            f"and model.ckpt.meta match, data {r.data_size} bytes, {v.tensors} tensors match "
            "their CRC32C"
        )
        if v.tarball_is_documented:
            line += f"; tarball sha256 {v.tarball_sha256} is the documented one"
        elif v.tarball_sha256 is not None:
            line += (
                f"; tarball sha256 {v.tarball_sha256} is NOT the documented "
                f"{r.tarball_sha256} ({r.tarball_sha256_source}): its members decided"
            )
        return line


def default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(base) if os.path.isabs(base) else Path.home() / ".cache"
    return root / "edgecam" / "checkpoints"


def resolve(args: argparse.Namespace, workdir: Path) -> Source:
    """The checked source for the parsed arguments; ``workdir`` receives unpacked files."""
    if args.official is not None or args.tarball is not None:
        return _from_release(args, workdir)
    if args.checkpoint is not None:
        return _from_checkpoint(args)
    settings = read_pipeline_config(args.pipeline_config) if args.pipeline_config else None
    return Source(None, settings)


def _from_release(args: argparse.Namespace, workdir: Path) -> Source:
    if args.tarball is not None:
        tarball = args.tarball
        if not tarball.is_file():
            raise UsageError(f"--tarball {tarball}: no such file")
        release = find_release(tarball)
    else:
        release = _release.RELEASES[args.official]
        cache = args.cache or default_cache()
        tarball = _release.download(release, args.url or release.url, cache)
    digest, documented = _release.tarball_note(release, tarball)
    _release.unpack(release, tarball, workdir)
    verification = _release.verify(release, workdir)
    verification = replace(verification, tarball_sha256=digest, tarball_is_documented=documented)
    settings = read_pipeline_config(workdir / _release.CONFIG)
    return Source(workdir / "model.ckpt", settings, release, verification)


def find_release(tarball: Path) -> Release:
    """The known release whose folder the tarball holds (names only; nothing extracted)."""
    folders = {r.folder: r for r in _release.RELEASES.values()}
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            for member in tar:
                top = member.name.removeprefix("./").split("/", 1)[0]
                if top in folders:
                    return folders[top]
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelError(
            f"{tarball}: not a complete .tar.gz ({first})",
            "the download is truncated or not the release tarball; fetch it again",
        ) from exc
    known = ", ".join(f"{r.folder}/" for r in _release.RELEASES.values())
    raise ModelError(f"{tarball}: holds no known release (looked for {known})")


def _from_checkpoint(args: argparse.Namespace) -> Source:
    prefix = _prefix(args.checkpoint)
    directory = prefix.parent
    config = args.pipeline_config or directory / _release.CONFIG
    if args.own_checkpoint:
        verification = Verification("own checkpoint (not pinned)", "", 0)
        tensors = _release.check_tensors(prefix)
        verification = replace(verification, tensors=tensors)
        settings = read_pipeline_config(config) if config.is_file() else None
        if settings is None:
            log.warning("no %s: sizes, classes and anchors from flags/defaults", config)
        return Source(prefix, settings, None, verification)
    release = _release.identify(directory) if prefix.name == "model.ckpt" else None
    if release is None:
        index = Path(f"{prefix}.index")
        digest = sha256_file(index) if index.is_file() else "missing"
        known = ", ".join(r.folder for r in _release.RELEASES.values())
        raise ModelError(
            f"{index}: sha256 {digest} is not the index of a pinned official release ({known}):"
            " a different model or another release",
            "for a checkpoint of your own training pass --own-checkpoint",
        )
    if args.pipeline_config is not None:
        raise UsageError("--pipeline-config is only for --own-checkpoint / --random")
    verification = _release.verify(release, directory)
    return Source(prefix, read_pipeline_config(config), release, verification)


def _prefix(path: Path) -> Path:
    """A checkpoint directory (``checkpoint`` state file or a single ``*.index``) or prefix."""
    if path.is_dir():
        state = path / _release.STATE
        if state.is_file():
            for line in state.read_text(encoding="utf-8", errors="replace").splitlines():
                key, _, value = line.partition(":")
                if key.strip() == "model_checkpoint_path":
                    name = Path(value.strip().strip('"'))
                    candidate = name if name.is_absolute() else path / name
                    if Path(f"{candidate}.index").is_file():
                        return candidate
        indexes = sorted(path.glob("*.index"))
        if len(indexes) != 1:
            raise UsageError(
                f"{path}: {'no' if not indexes else 'several'} checkpoint (*.index) files",
                "pass the unpacked model zoo directory or its model.ckpt prefix",
            )
        return indexes[0].with_suffix("")
    if not Path(f"{path}.index").is_file():
        raise UsageError(f"checkpoint {path} not found (no {path}.index)")
    return path
