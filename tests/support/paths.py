"""Where the checkout and the test assets are.

The asset folder: $EDGECAM_ASSETS if set, else ../shared/assets next to the checkout when it
exists, else the cache `python -m tools.fetch_assets` fills (see tools/_assets.py, the one
place this rule lives). conftest.py fails the run, naming the command, when files are missing.
"""

from __future__ import annotations

from pathlib import Path

from tools._assets import FETCH_COMMAND, cache_root, locate, missing_required

REPO = Path(__file__).resolve().parents[2]


def assets_dir() -> Path:
    return locate()[0]


ASSETS = assets_dir()

__all__ = ["ASSETS", "FETCH_COMMAND", "REPO", "assets_dir", "cache_root", "missing_required"]
