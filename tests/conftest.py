"""Shared fixtures: the real test assets (see tests/support/paths.py for where they are found).

Missing assets fail the run instead of skipping: a green CI without them would prove nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.paths import ASSETS, FETCH_COMMAND, missing_required

#: The real Mosquitto fixtures (broker, tls_broker, collector_factory, and relays: more "nodes"
#: in front of it) and a real full file system (full_fs) for every test folder.
pytest_plugins = ("tests.support.mosquitto", "tests.support.mqtt_relay", "tests.support.fullfs")


@pytest.fixture(scope="session")
def assets() -> Path:
    """Root of the real test assets (models/, labels/, images/, video/)."""
    missing = missing_required(ASSETS)
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        shown = ", ".join(missing[:3]) + more
        pytest.fail(
            f"test assets incomplete at {ASSETS} ({shown}): run `{FETCH_COMMAND}` to fetch "
            "them into the test cache, or set EDGECAM_ASSETS to a complete asset folder",
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
