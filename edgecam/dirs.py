"""Where edgecam keeps state (outbox, runtime choice), caches and its shipped data files, and
where the project itself lives: one rule for every module.

Under systemd, StateDirectory= / CacheDirectory= set ``$STATE_DIRECTORY`` / ``$CACHE_DIRECTORY``
(the only writable places once ProtectSystem=strict and ProtectHome=yes apply); elsewhere the
XDG base-directory defaults. Relative XDG values are ignored, as the XDG spec asks.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from collections.abc import Mapping
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def _first(value: str) -> Path:
    return Path(value.split(":", maxsplit=1)[0])  # several StateDirectory= entries are ':'-joined


def systemd_state_dir(environ: Mapping[str, str] | None = None) -> Path | None:
    """Ours of systemd's StateDirectory= (`$STATE_DIRECTORY`), None outside such a unit."""
    env = os.environ if environ is None else environ
    value = env.get("STATE_DIRECTORY", "")
    return _first(value) if value else None


def _xdg(env: Mapping[str, str], name: str, fallback: str) -> Path:
    value = env.get(name, "")
    if value and Path(value).is_absolute():
        return Path(value) / "edgecam"
    home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    return home / fallback / "edgecam"


def state_dir(configured: Path | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """`service.state_dir` if set, else `$STATE_DIRECTORY`, else `$XDG_STATE_HOME/edgecam`,
    else `~/.local/state/edgecam`."""
    if configured is not None:
        return configured
    env = os.environ if environ is None else environ
    return systemd_state_dir(env) or _xdg(env, "XDG_STATE_HOME", ".local/state")


def cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """`$CACHE_DIRECTORY`, else `$XDG_CACHE_HOME/edgecam`, else `~/.cache/edgecam`."""
    env = os.environ if environ is None else environ
    if env.get("CACHE_DIRECTORY"):
        return _first(env["CACHE_DIRECTORY"])
    return _xdg(env, "XDG_CACHE_HOME", ".cache")


_PACKAGE = Path(__file__).resolve().parent


def shipped(wheel_path: str, checkout_path: str) -> Path:
    """A data file or folder edgecam ships: ``edgecam/_data/<wheel_path>`` in an installed
    wheel, ``<checkout>/<checkout_path>`` when running from a source checkout. The wheel's path
    is returned when neither exists, so the caller's error names where it should be."""
    installed = _PACKAGE / "_data" / wheel_path
    checkout = _PACKAGE.parent / checkout_path
    if installed.exists() or not checkout.exists():
        return installed
    return checkout


def project_url() -> str | None:
    """The project's home page: ``[project.urls] Source`` of pyproject.toml, the one place it
    is set. Read from the checkout when running from one, else from the installed
    distribution's metadata; None when neither says."""
    pyproject = _PACKAGE.parent / "pyproject.toml"
    if pyproject.is_file():
        try:
            urls = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["urls"]
            return str(urls["Source"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
    import importlib.metadata  # only for the project URL (origin blocks, the unit's docs)

    try:
        entries = importlib.metadata.metadata("edgecam").get_all("Project-URL") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for entry in entries:
        name, _, url = str(entry).partition(",")
        if name.strip().lower() == "source":
            return url.strip()
    return None


_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def read_regular_file(path: Path, limit: int) -> bytes:
    """The bytes of `path`, which must be a regular file of at most `limit` bytes.

    Every file edgecam reads whole (config, password, labels, model, manifest) goes through
    here, so a hostile path fails with an OSError whose strerror reads as a sentence instead
    of hanging (a FIFO blocks a plain open() until a writer comes), growing until MemoryError
    (/dev/zero) or failing later in a confusing way (a directory). Opened non-blocking, then
    checked on the open descriptor: no race between the check and the read.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as handle:
        mode = os.fstat(fd).st_mode
        for is_kind, kind in _KINDS:
            if is_kind(mode):
                raise OSError(errno.EINVAL, f"is {kind}, not a regular file", str(path))
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise OSError(errno.EFBIG, f"larger than {limit} bytes", str(path))
    return data
