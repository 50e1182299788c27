"""Bounded on-disk outbox: every message waits here until the broker acknowledges it.

SQLite in WAL mode with synchronous=NORMAL: a committed append survives a crash or SIGKILL of
the process (only a power cut can lose the last transactions), costs tens of microseconds, and
needs no extra dependency. Rows are delivered in id order (AUTOINCREMENT never reuses an id, so
a reader's cursor stays valid after deletes). Past the count/byte cap the oldest rows are
dropped; every drop is counted in a persisted counter and logged at WARNING, never silently.
The WAL is cut back to `WAL_SIZE_LIMIT` after each checkpoint, so it cannot grow without bound.

A storage failure (disk full, I/O error, damaged file) raises OutboxError and changes
nothing: the caller (edgecam.sinks.mqtt_queue) keeps the message in memory instead. Deleting
acknowledged rows fails too on a full disk: they then count as done at once (never handed out
again, not in `depth`), the delete is retried by :meth:`flush_deletes`, and their high-water
mark goes to an :class:`AckMark` so the next start does not send them again either.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from edgecam.dirs import state_dir
from edgecam.errors import SinkError
from edgecam.sinks.outbox_files import (
    AckMark,
    OutboxError,
    as_outbox_error,
    connect,
    damaged_error,
    lock_exclusive,
)

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
MARK_INTERVAL_S = 1.0
_CHUNK = 500  # ids per statement: far below SQLite's bound on host parameters

#: (topic, payload, qos, retain): a message as the producer hands it over.
Message = tuple[str, bytes, int, bool]


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    topic: str
    payload: bytes
    qos: int
    retain: bool


class Outbox:
    """Thread-safe FIFO of (topic, payload, qos, retain) on disk; one writer process per file.

    Raises OutboxError when the file cannot be opened or is damaged (see open_outbox for what
    start-up makes of it).
    """

    def __init__(self, path: Path, *, max_messages: int, max_bytes: int) -> None:
        self.path = path
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._lockfile = lock_exclusive(path)
        self._done: set[int] = set()  # acknowledged, not yet deleted from the file
        self._unaccounted: set[int] = set()  # done, but still counted in depth/bytes
        self._skip_through = 0  # rows <= this were acknowledged in an earlier run
        self._mark: AckMark | None = None
        self._last_mark = -MARK_INTERVAL_S
        self._mark_failed = False
        self._dropped_saved = 0  # the persisted lifetime counter, as last read or written
        self._dropped_unsaved = 0  # drops not yet in the file (it could not be written)
        self.dropped = 0  # this run: cap and oversize drops
        self._dropped_unlogged = 0
        self._last_drop_log = -DROP_LOG_INTERVAL_S
        try:
            self._db = connect(path)
            self._db.executescript(_SCHEMA)
            self._db.isolation_level = "DEFERRED"  # `with db:` = one transaction per call
            self._dropped_saved = self._counter("dropped")
            self._open_mark()
            self.depth, self.bytes = self._totals()
        except sqlite3.Error as exc:
            self._close_files()
            raise as_outbox_error(exc, path, "open it") from exc
        if self.depth:
            log.info("outbox %s: %d messages from a previous run to deliver", path, self.depth)

    # -- producer side ---------------------------------------------------------------------

    @property
    def dropped_total(self) -> int:
        """Drops over the life of this file (persisted, survives restarts)."""
        with self._lock:
            return self._dropped_saved + self._dropped_unsaved

    def note_lost(self, count: int) -> None:
        """Count messages lost elsewhere (held in memory while the outbox could not store
        them) in the lifetime total; written with the next successful commit."""
        with self._lock:
            self._dropped_unsaved += count

    def append(self, topic: str, payload: bytes, qos: int, retain: bool) -> int:
        """Store one message (committed on return); returns how many old ones were dropped."""
        return self.append_many([(topic, payload, qos, retain)])

    def append_many(self, messages: Sequence[Message]) -> int:
        """Store messages in one transaction, in order; returns how many old ones were dropped.
        OutboxError (nothing stored) when the storage fails."""
        rows = []
        now_ms = int(time.time() * 1000)
        for topic, payload, qos, retain in messages:
            size = len(payload) + len(topic.encode())
            if size > self.max_bytes:
                self._reject_oversized(topic, size)
                continue
            rows.append((topic, payload, qos, int(retain), size, now_ms))
        oversized = len(messages) - len(rows)
        if not rows:
            return oversized
        with self._lock:
            try:
                with self._db:
                    self._db.executemany(
                        "INSERT INTO messages (topic, payload, qos, retain, size, created_ms)"
                        " VALUES (?, ?, ?, ?, ?, ?)",
                        rows,
                    )
                    depth = self.depth + len(rows)
                    size_sum = self.bytes + sum(r[4] for r in rows)
                    victims, freed = self._enforce_cap(depth, size_sum)
                    saved = self._save_dropped(len(victims))
            except sqlite3.Error as exc:
                raise as_outbox_error(exc, self.path, "store messages") from exc
            self.depth, self.bytes = depth - len(victims), size_sum - freed
            self._dropped_saved, self._dropped_unsaved = saved, 0
            self.dropped += len(victims)
        if victims:
            self._log_drops(len(victims))
        return len(victims) + oversized

    def probe(self) -> None:
        """A small write (the lifetime drop counter): OutboxError if the disk still fails."""
        with self._lock:
            try:
                with self._db:
                    saved = self._save_dropped(0, force=True)
            except sqlite3.Error as exc:
                raise as_outbox_error(exc, self.path, "store messages") from exc
            self._dropped_saved, self._dropped_unsaved = saved, 0

    def _reject_oversized(self, topic: str, size: int) -> None:
        """A message bigger than the whole cap is dropped itself instead of emptying the outbox."""
        with self._lock:
            self._dropped_unsaved += 1
            self.dropped += 1
        log.warning(
            "outbox %s: dropped a %d-byte message on %s: larger than outbox.max_bytes (%d)",
            self.path,
            size,
            topic,
            self.max_bytes,
        )

    def _save_dropped(self, new: int, *, force: bool = False) -> int:
        """Write the lifetime counter inside the caller's transaction; returns the new value."""
        total = self._dropped_saved + self._dropped_unsaved + new
        if total != self._dropped_saved or force:
            self._db.execute(
                "INSERT INTO counters (name, value) VALUES ('dropped', ?)"
                " ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                (total,),
            )
        return total

    def _enforce_cap(self, depth: int, size: int) -> tuple[list[int], int]:
        """Delete the oldest waiting rows until under both caps (caller holds the transaction)."""
        if depth <= self.max_messages and size <= self.max_bytes:
            return [], 0
        excess_count = max(0, depth - self.max_messages)
        excess_bytes = max(0, size - self.max_bytes)
        victims: list[int] = []
        freed = 0
        query = "SELECT id, size FROM messages WHERE id > ? ORDER BY id"
        for row_id, row_size in self._db.execute(query, (self._skip_through,)):
            if len(victims) >= excess_count and freed >= excess_bytes:
                break
            if int(row_id) in self._done:
                continue  # already delivered: not a drop, and no longer in depth
            victims.append(int(row_id))
            freed += int(row_size)
        self._delete_ids(victims)
        return victims, freed

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

    # -- publisher side --------------------------------------------------------------------

    def peek(self, after_id: int, limit: int, skip: Iterable[int] = ()) -> list[OutboxRow]:
        """Up to `limit` rows with id > after_id, oldest first, leaving out acknowledged rows
        and `skip` (rows still in flight); rows stay until `delete`."""
        with self._lock:
            after = max(after_id, self._skip_through)
            leave_out = self._done.union(skip)
            extra = sum(1 for i in leave_out if i > after)
            try:
                rows = self._db.execute(
                    "SELECT id, topic, payload, qos, retain FROM messages"
                    " WHERE id > ? ORDER BY id LIMIT ?",
                    (after, limit + extra),
                ).fetchall()
            except sqlite3.Error as exc:
                raise as_outbox_error(exc, self.path, "read messages") from exc
        out = [
            OutboxRow(int(r[0]), str(r[1]), bytes(r[2]), int(r[3]), bool(r[4]))
            for r in rows
            if int(r[0]) not in leave_out
        ]
        return out[:limit]

    def delete(self, ids: Iterable[int]) -> int:
        """Acknowledged rows are done: never handed out again, out of `depth` at once.

        Removed from the file in one transaction, with any earlier ones a full disk kept.
        Raises OutboxError when the file cannot be changed (the rows stay done, the delete is
        retried by the next call or :meth:`flush_deletes`). Returns rows newly done."""
        with self._lock:
            fresh = {int(i) for i in ids} - self._done
            if not fresh:
                return 0
            self._done |= fresh
            self._unaccounted |= fresh
            try:
                count = self._account()
                self._delete_done()
            except sqlite3.Error as exc:
                self._delete_failed(exc)
                count = len(fresh)  # accounted once the file can be read again
        return count

    def flush_deletes(self) -> bool:
        """Retry deleting acknowledged rows a full disk kept; True when none are left."""
        with self._lock:
            if not self._done and not self._skip_through:
                return True
            try:
                self._account()
                self._delete_done()
            except sqlite3.Error as exc:
                self._delete_failed(exc)
        return True

    def _account(self) -> int:
        """Take done rows out of depth/bytes (a read: works on a full disk)."""
        ids = sorted(self._unaccounted)
        count = size = 0
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            row = self._db.execute(
                f"SELECT COUNT(*), COALESCE(SUM(size), 0) FROM messages WHERE id IN ({marks})"
                " AND id > ?",
                [*chunk, self._skip_through],
            ).fetchone()
            count, size = count + int(row[0]), size + int(row[1])
        self.depth -= count
        self.bytes -= size
        self._unaccounted.clear()
        return count

    def _delete_done(self) -> None:
        with self._db:
            if self._skip_through:
                self._db.execute("DELETE FROM messages WHERE id <= ?", (self._skip_through,))
            self._delete_ids(sorted(self._done))
        self._done.clear()
        self._skip_through = 0

    def _delete_ids(self, ids: Sequence[int]) -> None:
        self._db.executemany("DELETE FROM messages WHERE id = ?", [(i,) for i in ids])

    def _delete_failed(self, exc: sqlite3.Error) -> None:
        """The acknowledged rows stay done. On a full disk, try once more after a checkpoint:
        it lets the WAL be rewritten from its start, in blocks the file already owns. Still
        failing: write the mark (so the next start does not re-send them) and raise."""
        error = as_outbox_error(exc, self.path, "delete delivered messages")
        if error.kind == "full":
            try:
                self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
                self._account()
                self._delete_done()
                return
            except sqlite3.Error as again:
                error = as_outbox_error(again, self.path, "delete delivered messages")
        self._write_mark()
        raise error from exc

    def _open_mark(self) -> None:
        """Read the mark left by a run that could not delete its acknowledged rows."""
        outbox_id = self._counter("outbox_id")
        if not outbox_id:
            outbox_id = random.getrandbits(62) + 1
            try:
                with self._db:
                    self._db.execute(
                        "INSERT INTO counters (name, value) VALUES ('outbox_id', ?)", (outbox_id,)
                    )
            except sqlite3.Error as exc:
                error = as_outbox_error(exc, self.path, "store its id")
                if error.kind == "damaged":
                    raise
                log.info("outbox %s: no acknowledgement mark this run (%s)", self.path, exc)
                return
        self._mark = AckMark(self.path.with_name(self.path.name + ".acked"), outbox_id)
        self._skip_through = self._mark.read()
        if self._skip_through:
            try:
                self._delete_done()
            except sqlite3.Error as exc:
                if as_outbox_error(exc, self.path, "delete delivered messages").kind == "damaged":
                    raise
                log.info(
                    "outbox %s: rows up to %d were delivered by an earlier run: not sending"
                    " them again (deleted once the disk allows)",
                    self.path,
                    self._skip_through,
                )

    def _write_mark(self, *, force: bool = False) -> bool:
        """Every row up to the first one not yet done is acknowledged (rate-limited); False
        when no mark could be written."""
        now = time.monotonic()
        if self._mark is None:
            return False
        if now - self._last_mark < MARK_INTERVAL_S and not force:
            return True
        self._last_mark = now
        upto = self._skip_through
        try:
            for (row_id,) in self._db.execute(
                "SELECT id FROM messages WHERE id > ? ORDER BY id", (self._skip_through,)
            ):
                if int(row_id) not in self._done:
                    break
                upto = int(row_id)
        except sqlite3.Error as exc:
            if not self._mark_failed:  # once: the failure itself is reported by the caller
                log.warning("outbox %s: cannot read it to mark delivered rows: %s", self.path, exc)
            self._mark_failed = True
            return False
        return self._mark.write(upto)

    def _totals(self) -> tuple[int, int]:
        row = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM messages WHERE id > ?",
            (self._skip_through,),
        ).fetchone()
        return int(row[0]), int(row[1])

    def _counter(self, name: str) -> int:
        row = self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        """Final delete attempt, mark, WAL checkpoint (truncating it), then release the file."""
        with self._lock:
            if self._lockfile.closed:
                return
            if self._dropped_unlogged:
                log.warning("outbox %s: %d more dropped", self.path, self._dropped_unlogged)
            if self._done or self._skip_through:
                try:
                    self._delete_done()
                except sqlite3.Error as exc:
                    marked = self._write_mark(force=True)
                    log.warning(
                        "outbox %s: %d delivered message(s) could not be deleted (%s): %s",
                        self.path,
                        len(self._done),
                        exc,
                        "the next start skips them"
                        if marked
                        else "the next start may send them again (duplicates)",
                    )
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:  # full or failing disk: SQLite replays the WAL at open
                log.info("outbox %s: WAL not checkpointed at close: %s", self.path, exc)
            self._db.close()
            self._close_files()

    def _close_files(self) -> None:
        if self._mark is not None:
            self._mark.close()
        self._lockfile.close()


def outbox_path(path: Path | None, state: Path | None = None) -> Path:
    """``path``, else ``outbox.sqlite3`` in ``state`` (default: :func:`edgecam.dirs.state_dir`)."""
    return path or (state or state_dir()) / "outbox.sqlite3"


def open_outbox(
    path: Path | None, *, max_messages: int, max_bytes: int, state: Path | None = None
) -> Outbox:
    """The outbox at :func:`outbox_path`. A damaged file or a read-only place is a SinkError
    with advice that keeps the queued messages; a full disk or an I/O error is an OutboxError
    the caller can run without (edgecam.sinks.mqtt_queue)."""
    where = outbox_path(path, state)
    try:
        return Outbox(where, max_messages=max_messages, max_bytes=max_bytes)
    except OutboxError as exc:
        if exc.kind == "damaged":
            raise damaged_error(where, exc.detail) from None
        if exc.kind == "readonly":
            raise SinkError(
                f"{where}: cannot write the outbox: {exc.detail}",
                "give the service user write access there, or set outbox.path",
            ) from None
        raise
