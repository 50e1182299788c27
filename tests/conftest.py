"""Shared fixtures: the real assets in ../shared/assets (override with EDGECAM_ASSETS).

Missing assets fail the run instead of skipping: a green CI without them would prove nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _assets_dir() -> Path:
    env = os.environ.get("EDGECAM_ASSETS")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "assets"


ASSETS = _assets_dir()


@pytest.fixture(scope="session")
def assets() -> Path:
    """Root of the real test assets (models/, labels/, images/, video/)."""
    if not (ASSETS / "models").is_dir():
        pytest.fail(
            f"test assets not found at {ASSETS}: set EDGECAM_ASSETS to the shared/assets folder",
            pytrace=False,
        )
    return ASSETS


@pytest.fixture(scope="session")
def asset_models(assets: Path) -> Path:
    return assets / "models"


@pytest.fixture(scope="session")
def asset_images(assets: Path) -> Path:
    return assets / "images"


@pytest.fixture(scope="session")
def asset_video(assets: Path) -> Path:
    return assets / "video" / "one-by-one-person-detection.mp4"
