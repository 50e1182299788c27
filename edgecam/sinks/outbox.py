"""Bounded on-disk outbox: every message waits here until the broker acknowledges it.

SQLite in WAL mode with synchronous=NORMAL: a committed append survives a crash or SIGKILL of
the process (only a power cut can lose the last transactions), costs tens of microseconds, and
needs no extra dependency. Rows are delivered in id order (AUTOINCREMENT never reuses an id, so
a reader's cursor stays valid after deletes). Past the count/byte cap the oldest rows are
dropped; every drop is counted in a persisted counter and logged at WARNING, never silently.
"""

from __future__ import annotations

import fcntl
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from edgecam.dirs import state_dir
from edgecam.errors import SinkError

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    size INTEGER NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
DROP_LOG_INTERVAL_S = 10.0


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    topic: str
    payload: bytes
    qos: int
    retain: bool


class Outbox:
    """Thread-safe FIFO of (topic, payload, qos, retain) on disk; one writer process per file."""

    def __init__(self, path: Path, *, max_messages: int, max_bytes: int) -> None:
        self.path = path
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._lockfile = _lock_exclusive(path)
        try:
            self._db = _connect(path)
            self.depth, self.bytes = self._totals()
        except sqlite3.DatabaseError as exc:
            self._lockfile.close()
            raise SinkError(
                f"{path}: outbox is not a usable SQLite database ({exc})",
                "move the file aside; edgecam creates a new one",
            ) from None
        self.dropped = 0  # this run
        self._last_write_error = -DROP_LOG_INTERVAL_S
        self._dropped_unlogged = 0
        self._last_drop_log = -DROP_LOG_INTERVAL_S
        if self.depth:
            log.info("outbox %s: %d messages from a previous run to deliver", path, self.depth)

    @property
    def dropped_total(self) -> int:
        """Drops over the life of this file (persisted, survives restarts)."""
        with self._lock:
            return self._counter("dropped")

    def append(self, topic: str, payload: bytes, qos: int, retain: bool) -> int:
        """Store one message (committed on return); returns how many old ones were dropped."""
        size = len(payload) + len(topic.encode())
        if size > self.max_bytes:
            return self._reject_oversized(topic, size)
        try:
            with self._lock, self._db:
                self._db.execute(
                    "INSERT INTO messages (topic, payload, qos, retain, size, created_ms)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (topic, payload, qos, int(retain), size, int(time.time() * 1000)),
                )
                self.depth += 1
                self.bytes += size
                dropped = self._enforce_cap()
        except sqlite3.OperationalError as exc:  # disk full, I/O error: keep inference running
            return self._write_failed(topic, exc)
        if dropped:
            self._log_drops(dropped)
        return dropped

    def _write_failed(self, topic: str, exc: sqlite3.Error) -> int:
        """The message cannot be stored: count it as dropped (in memory) and say so."""
        with self._lock:
            self.depth, self.bytes = self._totals()
            self.dropped += 1
        now = time.monotonic()
        if now - self._last_write_error >= DROP_LOG_INTERVAL_S:
            self._last_write_error = now
            log.error(
                "outbox %s: cannot store a message on %s (%s): dropped", self.path, topic, exc
            )
        return 1

    def _reject_oversized(self, topic: str, size: int) -> int:
        """A message bigger than the whole cap is dropped itself instead of emptying the outbox."""
        with self._lock, self._db:
            self._bump_dropped(1)
            self.dropped += 1
        log.warning(
            "outbox %s: dropped a %d-byte message on %s: larger than outbox.max_bytes (%d)",
            self.path,
            size,
            topic,
            self.max_bytes,
        )
        return 1

    def _bump_dropped(self, n: int) -> None:
        self._db.execute(
            "INSERT INTO counters (name, value) VALUES ('dropped', ?)"
            " ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
            (n,),
        )

    def _enforce_cap(self) -> int:
        """Delete the oldest rows until under both caps (caller holds lock and transaction)."""
        if self.depth <= self.max_messages and self.bytes <= self.max_bytes:
            return 0
        excess_count = max(0, self.depth - self.max_messages)
        excess_bytes = max(0, self.bytes - self.max_bytes)
        victims: list[tuple[int, int]] = []
        freed = 0
        for row_id, size in self._db.execute("SELECT id, size FROM messages ORDER BY id"):
            if len(victims) >= excess_count and freed >= excess_bytes:
                break
            victims.append((int(row_id), int(size)))
            freed += int(size)
        self._db.executemany("DELETE FROM messages WHERE id = ?", [(v[0],) for v in victims])
        self._bump_dropped(len(victims))
        self.depth -= len(victims)
        self.bytes -= freed
        self.dropped += len(victims)
        return len(victims)

    def _log_drops(self, dropped: int) -> None:
        """WARNING on the first drop, then a summary at most every DROP_LOG_INTERVAL_S."""
        now = time.monotonic()
        self._dropped_unlogged += dropped
        if now - self._last_drop_log < DROP_LOG_INTERVAL_S:
            return
        log.warning(
            "outbox %s full (cap %d messages / %d bytes): dropped the %d oldest message(s);"
            " %d dropped this run",
            self.path,
            self.max_messages,
            self.max_bytes,
            self._dropped_unlogged,
            self.dropped,
        )
        self._dropped_unlogged = 0
        self._last_drop_log = now

    def peek(self, after_id: int, limit: int) -> list[OutboxRow]:
        """Up to `limit` rows with id > after_id, oldest first (rows stay until `delete`)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, topic, payload, qos, retain FROM messages"
                " WHERE id > ? ORDER BY id LIMIT ?",
                (after_id, limit),
            ).fetchall()
        return [OutboxRow(int(r[0]), str(r[1]), bytes(r[2]), int(r[3]), bool(r[4])) for r in rows]

    def delete(self, ids: Iterable[int]) -> int:
        """Remove acknowledged rows in one transaction; ids already dropped are ignored."""
        keys = [(i,) for i in ids]
        if not keys:
            return 0
        with self._lock, self._db:
            marks = ",".join("?" * len(keys))
            row = self._db.execute(
                f"SELECT COUNT(*), COALESCE(SUM(size), 0) FROM messages WHERE id IN ({marks})",
                [k[0] for k in keys],
            ).fetchone()
            self._db.executemany("DELETE FROM messages WHERE id = ?", keys)
            self.depth -= int(row[0])
            self.bytes -= int(row[1])
        return int(row[0])

    def _totals(self) -> tuple[int, int]:
        row = self._db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM messages").fetchone()
        return int(row[0]), int(row[1])

    def _counter(self, name: str) -> int:
        row = self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        with self._lock:
            if self._lockfile.closed:
                return
            if self._dropped_unlogged:
                log.warning("outbox %s: %d more dropped", self.path, self._dropped_unlogged)
            self._db.close()
            self._lockfile.close()


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=5.0)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(_SCHEMA)
    db.isolation_level = "DEFERRED"  # `with db:` = one transaction per append / delete batch
    return db


def _lock_exclusive(path: Path) -> IO[bytes]:
    """One publisher per outbox: two would deliver every message twice and race on deletes."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path.with_name(path.name + ".lock"), "ab")  # noqa: SIM115
    except OSError as exc:
        raise SinkError(
            f"{path}: cannot create the outbox: {exc.strerror}",
            "set outbox.path to a writable file (or run with a StateDirectory)",
        ) from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise SinkError(
            f"{path}: outbox is in use by another edgecam process",
            "give each instance its own outbox.path and mqtt.device_id",
        ) from None
    return handle


def open_outbox(
    path: Path | None, *, max_messages: int, max_bytes: int, state: Path | None = None
) -> Outbox:
    """``path``, else ``outbox.sqlite3`` in ``state`` (default: :func:`edgecam.dirs.state_dir`)."""
    return Outbox(
        path or (state or state_dir()) / "outbox.sqlite3",
        max_messages=max_messages,
        max_bytes=max_bytes,
    )
