"""Shared fixtures: the real assets in ../shared/assets (override with EDGECAM_ASSETS).

Missing assets fail the run instead of skipping: a green CI without them would prove nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.paths import ASSETS

#: The real Mosquitto fixtures (broker, tls_broker, collector_factory) and a real full file
#: system (full_fs) for every test folder.
pytest_plugins = ("tests.support.mosquitto", "tests.support.fullfs")


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
