"""The one cache of findings (runtime/cache.py): sections in one JSON file in the state dir,
bounded, atomically replaced, and anything unreadable or unwritable only costs a new probe."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from edgecam.runtime import cache as cache_mod
from edgecam.runtime.cache import CACHE_NAME, ChoiceCache


def test_sections_share_one_file_and_keep_their_entries(tmp_path: Path) -> None:
    cache = ChoiceCache(tmp_path)
    cache.put("choice", "k1", {"runtime": "litert"})
    cache.put("loadable", "k1", {"outputs": [1]})
    entry = cache.get("choice", "k1")
    assert entry is not None and entry["runtime"] == "litert" and entry["saved_at"]
    assert cache.get("loadable", "k1") is not None and cache.get("loadable", "k2") is None
    data = json.loads((tmp_path / CACHE_NAME).read_text())
    assert set(data["sections"]) == {"choice", "loadable"}
    assert sorted(p.name for p in tmp_path.iterdir()) == [CACHE_NAME]  # no temp files left


def test_a_section_keeps_only_the_newest_entries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache_mod, "MAX_ENTRIES", 3)
    stamps = iter(f"2026-01-01T00:00:0{i}Z" for i in range(9))
    monkeypatch.setattr(time, "strftime", lambda *_: next(stamps))
    cache = ChoiceCache(tmp_path)
    for i in range(5):
        cache.put("choice", f"k{i}", {"n": i})
    assert sorted(cache.entries("choice")) == ["k2", "k3", "k4"]


@pytest.mark.parametrize(
    "content",
    ["{ half a json", "[]", json.dumps({"schema": 1, "entries": {}}), json.dumps({"schema": 2})],
    ids=["truncated", "not-an-object", "old-schema", "no-sections"],
)
def test_unreadable_content_counts_as_empty(tmp_path: Path, content: str) -> None:
    (tmp_path / CACHE_NAME).write_text(content)
    cache = ChoiceCache(tmp_path)
    assert cache.entries("choice") == {}
    cache.put("choice", "k", {"n": 1})  # and is replaced by a good file
    assert cache.get("choice", "k") is not None


def test_an_unwritable_state_dir_is_logged_not_fatal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    caplog.set_level(logging.INFO, logger="edgecam.runtime.cache")
    ChoiceCache(blocker / "state").put("choice", "k", {"n": 1})
    assert "cannot write" in caplog.text and "probes again" in caplog.text
