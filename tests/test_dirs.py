"""edgecam.dirs: the one rule for where state (outbox, runtime choice) and caches live."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgecam.dirs import cache_dir, state_dir


@pytest.mark.parametrize(
    ("configured", "env", "expected"),
    [
        (Path("/srv/edgecam"), {"STATE_DIRECTORY": "/var/lib/edgecam"}, "/srv/edgecam"),
        (
            None,
            {"STATE_DIRECTORY": "/var/lib/edgecam:/var/lib/other", "HOME": "/h"},
            "/var/lib/edgecam",
        ),
        (None, {"XDG_STATE_HOME": "/x/state", "HOME": "/h"}, "/x/state/edgecam"),
        (None, {"XDG_STATE_HOME": "relative", "HOME": "/h"}, "/h/.local/state/edgecam"),
        (None, {"HOME": "/h"}, "/h/.local/state/edgecam"),
    ],
)
def test_state_dir(configured: Path | None, env: dict[str, str], expected: str) -> None:
    assert state_dir(configured, env) == Path(expected)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"CACHE_DIRECTORY": "/var/cache/edgecam", "HOME": "/h"}, "/var/cache/edgecam"),
        ({"XDG_CACHE_HOME": "/x/cache", "HOME": "/h"}, "/x/cache/edgecam"),
        ({"XDG_CACHE_HOME": "relative", "HOME": "/h"}, "/h/.cache/edgecam"),
        ({"HOME": "/h"}, "/h/.cache/edgecam"),
    ],
)
def test_cache_dir(env: dict[str, str], expected: str) -> None:
    assert cache_dir(env) == Path(expected)


def test_without_home_in_the_environment_the_user_database_decides(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("HOME", raising=False)
    assert state_dir(None, {}) == Path.home() / ".local" / "state" / "edgecam"
