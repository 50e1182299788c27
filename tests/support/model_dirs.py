"""Model look-up confined to a test's own directories."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgecam.models import files

#: Environment variables that would point model look-up outside the test.
MODEL_ENV = ("EDGECAM_MODELS_DIR", "EDGECAM_MODEL_MIRROR", "EDGECAM_MANIFEST", "STATE_DIRECTORY")


def isolate_models(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Only directories below `tmp_path` are searched (not the user's cache or /var/lib)."""
    for var in MODEL_ENV:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(files, "SYSTEM_MODELS_DIR", tmp_path / "system")
