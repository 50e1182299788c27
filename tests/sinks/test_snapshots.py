"""The snapshot directory on a temporary directory: caps on count and bytes, oldest removed,
atomic writes, names kept inside the directory, and a clear SinkError when it cannot be made."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgecam.errors import SinkError
from edgecam.sinks.snapshots import SnapshotStore


def test_store_keeps_the_newest_files_within_the_count(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path / "snaps", max_files=3)
    (tmp_path / "snaps" / "notes.txt").write_text("not a snapshot")
    for i in range(5):
        store.save(f"{i:02d}-person.jpg", b"\xff\xd8" + bytes(100))
    assert [p.name for p in store.files()] == ["02-person.jpg", "03-person.jpg", "04-person.jpg"]
    assert (tmp_path / "snaps" / "notes.txt").exists()  # other files are not ours to delete
    assert not list((tmp_path / "snaps").glob(".tmp-*"))  # no half-written leftovers


def test_store_keeps_within_the_byte_budget(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, max_files=100, max_bytes=2500)
    for i in range(4):
        store.save(f"{i}.jpg", bytes(1000))
    assert [p.name for p in store.files()] == ["2.jpg", "3.jpg"]
    assert sum(p.stat().st_size for p in store.files()) <= 2500


def test_store_sanitises_names_to_stay_in_its_directory(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path / "d")
    path = store.save("../../evil name?.jpg", b"x")
    assert path.parent == tmp_path / "d" and path.name == "evil_name_.jpg"


def test_store_reports_an_unusable_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SinkError, match="snapshots dir"):
        SnapshotStore(blocker / "snaps")
