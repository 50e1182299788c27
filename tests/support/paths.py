"""Where the checkout and the shared test assets are (EDGECAM_ASSETS overrides the latter)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def assets_dir() -> Path:
    env = os.environ.get("EDGECAM_ASSETS")
    return Path(env) if env else REPO.parent / "shared" / "assets"


ASSETS = assets_dir()
