"""The on-disk outbox: FIFO order, durability across close and SIGKILL, the count/byte caps that
drop the oldest rows (counted, persisted, logged), a WAL that cannot grow for good, clear errors
for unusable files, and a genuinely full file system (a filled tmpfs): appends refused without
losing what is stored, delivered rows that cannot be deleted never handed out again.
"""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from edgecam.errors import SinkError
from edgecam.sinks.outbox import Outbox, open_outbox
from edgecam.sinks.outbox_files import WAL_SIZE_LIMIT, OutboxError
from tests.support.fullfs import FullFs
from tests.support.paths import REPO

TOPIC = "edgecam/cam1/detections"


def fill(box: Outbox, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        box.append(TOPIC, f"m{i}".encode(), 1, False)


def payloads(box: Outbox) -> list[str]:
    return [row.payload.decode() for row in box.peek(0, 1_000_000)]


def test_fifo_peek_and_delete(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", max_messages=100, max_bytes=1 << 20)
    fill(box, 5)
    rows = box.peek(0, 3)
    assert [r.payload for r in rows] == [b"m0", b"m1", b"m2"]
    assert (rows[0].topic, rows[0].qos, rows[0].retain) == (TOPIC, 1, False)
    assert [r.payload for r in box.peek(rows[-1].id, 10)] == [b"m3", b"m4"]  # cursor after id
    assert box.delete([rows[0].id, rows[2].id, 999_999]) == 2  # unknown ids are ignored
    assert payloads(box) == ["m1", "m3", "m4"]
    assert (box.depth, box.bytes) == (3, 3 * (len(TOPIC) + 2))
    box.close()


def test_rows_survive_reopen_and_ids_never_repeat(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", max_messages=100, max_bytes=1 << 20)
    fill(box, 3)
    last = box.peek(0, 10)[-1].id
    box.delete(r.id for r in box.peek(0, 10))
    fill(box, 2, start=3)
    box.close()
    again = Outbox(tmp_path / "o.db", max_messages=100, max_bytes=1 << 20)
    rows = again.peek(0, 10)
    assert [r.payload for r in rows] == [b"m3", b"m4"] and again.depth == 2
    assert rows[0].id > last  # a publisher's cursor stays valid after deletes
    again.close()


def test_count_cap_drops_oldest_counts_persists_and_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="edgecam.sinks.outbox")
    box = Outbox(tmp_path / "o.db", max_messages=10, max_bytes=1 << 20)
    fill(box, 25)
    assert payloads(box) == [f"m{i}" for i in range(15, 25)]
    assert (box.depth, box.dropped, box.dropped_total) == (10, 15, 15)
    assert any("full" in r.message and "dropped" in r.message for r in caplog.records)
    box.close()
    again = Outbox(tmp_path / "o.db", max_messages=10, max_bytes=1 << 20)
    fill(again, 1, start=25)
    assert (again.dropped, again.dropped_total) == (1, 16)  # per run vs. over the file's life
    again.close()


def test_byte_cap_drops_oldest_until_it_fits(tmp_path: Path) -> None:
    row = len(TOPIC) + 1000
    box = Outbox(tmp_path / "o.db", max_messages=1000, max_bytes=5 * row)
    for i in range(8):
        box.append(TOPIC, bytes([65 + i]) * 1000, 1, False)
    assert [r.payload[:1] for r in box.peek(0, 100)] == [b"D", b"E", b"F", b"G", b"H"]
    assert box.bytes == 5 * row and box.dropped == 3
    box.close()


def test_message_larger_than_the_cap_is_dropped_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    box = Outbox(tmp_path / "o.db", max_messages=100, max_bytes=5000)
    fill(box, 3)
    assert box.append(TOPIC, b"x" * 6000, 1, False) == 1
    assert payloads(box) == ["m0", "m1", "m2"]  # the queue was not emptied for it
    assert box.dropped_total == 1
    assert "larger than outbox.max_bytes" in caplog.text
    box.close()


def test_second_writer_is_refused(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", max_messages=10, max_bytes=1 << 20)
    with pytest.raises(SinkError, match="in use by another edgecam process"):
        Outbox(tmp_path / "o.db", max_messages=10, max_bytes=1 << 20)
    box.close()
    Outbox(tmp_path / "o.db", max_messages=10, max_bytes=1 << 20).close()  # free again


def test_damaged_file_is_refused_with_advice_that_keeps_its_messages(tmp_path: Path) -> None:
    bad = tmp_path / "o.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(SinkError) as info:
        open_outbox(bad, max_messages=10, max_bytes=1 << 20)
    text = str(info.value)
    assert text.startswith(f"{bad}: the outbox file is damaged")
    assert "changed nothing" in text and "o.db-wal" in text and ".recover" in text
    assert bad.read_bytes() == b"this is not sqlite" * 100  # nothing deleted or rewritten


def test_unusable_directory_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SinkError, match="cannot create the outbox"):
        Outbox(blocker / "o.db", max_messages=10, max_bytes=1 << 20)


def test_wal_mode_is_on(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", max_messages=10, max_bytes=1 << 20)
    fill(box, 1)
    mode = sqlite3.connect(tmp_path / "o.db").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    box.close()


def test_committed_rows_survive_sigkill(tmp_path: Path) -> None:
    """append() returns only after the commit: a process killed right after loses nothing."""
    code = (
        "import os, signal, sys; from pathlib import Path\n"
        "from edgecam.sinks.outbox import Outbox\n"
        f"box = Outbox(Path({str(tmp_path / 'o.db')!r}), max_messages=1000, max_bytes=1 << 20)\n"
        "for i in range(200): box.append('t', str(i).encode(), 1, False)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], check=False, cwd=REPO, timeout=60)
    assert proc.returncode == -signal.SIGKILL
    box = Outbox(tmp_path / "o.db", max_messages=1000, max_bytes=1 << 20)
    assert [int(p) for p in payloads(box)] == list(range(200))
    box.close()


def test_concurrent_appends_and_deletes_keep_exact_accounting(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", max_messages=150, max_bytes=1 << 20)
    writers = [threading.Thread(target=fill, args=(box, 200, k * 1000)) for k in range(2)]
    for w in writers:
        w.start()
    deleted = 0
    while any(w.is_alive() for w in writers):
        deleted += box.delete(r.id for r in box.peek(0, 7))
    for w in writers:
        w.join()
    count = (
        sqlite3.connect(tmp_path / "o.db").execute("SELECT COUNT(*) FROM messages").fetchone()[0]
    )
    assert box.depth == count
    assert deleted + box.dropped + box.depth == 400
    box.close()


def test_open_outbox_defaults_to_the_state_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    box = open_outbox(None, max_messages=10, max_bytes=1 << 20)
    assert box.path == tmp_path / "state" / "outbox.sqlite3" and box.path.exists()
    box.close()
    assert os.path.exists(str(box.path) + ".lock")
    # service.state_dir, handed down by `edgecam run`, wins over the environment
    box = open_outbox(None, max_messages=10, max_bytes=1 << 20, state=tmp_path / "configured")
    assert box.path == tmp_path / "configured" / "outbox.sqlite3" and box.path.exists()
    box.close()


def test_wal_is_cut_back_after_a_large_transaction(tmp_path: Path) -> None:
    """One big transaction (the cap deleting thousands of rows) must not leave a WAL that
    large for good: it is cut back at the next checkpoint, and emptied at close."""
    path = tmp_path / "o.db"
    box = Outbox(path, max_messages=100_000, max_bytes=1 << 30)
    for i in range(6000):
        box.append(TOPIC, bytes([i % 251]) * 2000, 1, False)
    box.close()
    box = Outbox(path, max_messages=10, max_bytes=1 << 30)
    box.append(TOPIC, b"x", 1, False)  # drops 5991 rows in one transaction
    wal = Path(str(path) + "-wal")
    peak = wal.stat().st_size
    for _ in range(3000):  # past the next automatic checkpoint
        box.append(TOPIC, b"y" * 100, 1, False)
        box.delete(r.id for r in box.peek(0, 5))
    after = wal.stat().st_size
    box.close()
    closed = wal.stat().st_size if wal.exists() else 0
    print(f"\nWAL: {peak} bytes after the big transaction, {after} later, {closed} closed")
    assert peak > WAL_SIZE_LIMIT  # the scenario did grow it
    assert after <= WAL_SIZE_LIMIT + 64 * 1024
    assert closed == 0


def test_full_disk_refuses_appends_and_keeps_what_is_stored(full_fs: FullFs) -> None:
    box = Outbox(full_fs.root / "o.db", max_messages=10_000, max_bytes=1 << 30)
    fill(box, 2)
    full_fs.fill()
    with pytest.raises(OutboxError) as info:
        for i in range(100):  # the WAL may still hold a page or two
            box.append(TOPIC, f"late{i}".encode() * 200, 1, False)
    assert info.value.kind == "full" and "0 bytes free" in str(info.value)
    assert "free space" in info.value.advice
    stored = payloads(box)
    assert stored[:2] == ["m0", "m1"] and box.depth == len(stored)
    box.close()


def test_delivered_rows_a_full_disk_cannot_delete_are_never_sent_again(full_fs: FullFs) -> None:
    path = full_fs.root / "o.db"
    box = Outbox(path, max_messages=10_000, max_bytes=1 << 30)
    fill(box, 30)
    full_fs.fill()
    rows = box.peek(0, 20)
    failures = []
    for start in range(0, 20, 2):  # one batch per group of PUBACKs
        try:
            box.delete(r.id for r in rows[start : start + 2])
        except OutboxError as exc:
            failures.append(exc.kind)
    assert failures and set(failures) == {"full"}
    assert box.depth == 10 and payloads(box) == [f"m{i}" for i in range(20, 30)]
    box.close()
    again = Outbox(path, max_messages=10_000, max_bytes=1 << 30)  # still full
    assert again.depth == 10 and payloads(again) == [f"m{i}" for i in range(20, 30)]
    again.close()
    full_fs.free_up()
    third = Outbox(path, max_messages=10_000, max_bytes=1 << 30)
    third.close()
    count = sqlite3.connect(path).execute("SELECT COUNT(*) FROM messages").fetchone()[0]
    assert count == 10  # the delivered rows are gone from the file now


def test_full_disk_at_open_is_an_outbox_error_not_a_damaged_file(full_fs: FullFs) -> None:
    full_fs.fill()
    with pytest.raises(OutboxError) as info:
        open_outbox(full_fs.root / "o.db", max_messages=10, max_bytes=1 << 20)
    assert info.value.kind == "full" and "move" not in info.value.advice
