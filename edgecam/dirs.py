"""Where edgecam keeps state (outbox, runtime choice), caches and its shipped data files:
one rule for every module.

Under systemd, StateDirectory= / CacheDirectory= set ``$STATE_DIRECTORY`` / ``$CACHE_DIRECTORY``
(the only writable places once ProtectSystem=strict and ProtectHome=yes apply); elsewhere the
XDG base-directory defaults. Relative XDG values are ignored, as the XDG spec asks.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


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
