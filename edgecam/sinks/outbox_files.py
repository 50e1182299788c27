"""The outbox's files and what the storage can do to them: the one-writer lock, the
acknowledged-rows mark, the SQLite connection settings, and one error type per failure the
operator can act on.

SQLite reports a full disk, an I/O error, a damaged file or a read-only file system as
`sqlite3.OperationalError` / `DatabaseError`, the same classes as a misuse of its API (a bug).
:func:`as_outbox_error` tells them apart, so storage failures are handled (the caller keeps the
message in memory) and bugs still surface unchanged.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import sqlite3
from pathlib import Path
from typing import IO, Literal

from edgecam.errors import SinkError

log = logging.getLogger(__name__)

StorageKind = Literal["full", "io", "damaged", "readonly", "busy"]

#: The WAL file is cut back to this size after each checkpoint (else it keeps its largest size
#: forever); checkpoints run every WAL_AUTOCHECKPOINT pages (SQLite's default, 4 MiB).
WAL_SIZE_LIMIT = 4 * 1024 * 1024
WAL_AUTOCHECKPOINT = 1000

# Extended result code names (Python >= 3.11) by prefix, then message texts for Python 3.10.
_KIND_BY_NAME: tuple[tuple[str, StorageKind], ...] = (
    ("SQLITE_FULL", "full"),
    ("SQLITE_IOERR", "io"),
    ("SQLITE_CANTOPEN", "io"),
    ("SQLITE_PROTOCOL", "io"),
    ("SQLITE_NOMEM", "io"),
    ("SQLITE_CORRUPT", "damaged"),
    ("SQLITE_NOTADB", "damaged"),
    ("SQLITE_READONLY", "readonly"),
    ("SQLITE_BUSY", "busy"),
    ("SQLITE_LOCKED", "busy"),
)
_KIND_BY_TEXT: tuple[tuple[str, StorageKind], ...] = (
    ("disk is full", "full"),
    ("disk I/O error", "io"),
    ("unable to open", "io"),
    ("out of memory", "io"),
    ("malformed", "damaged"),
    ("not a database", "damaged"),
    ("readonly", "readonly"),
    ("locked", "busy"),
)

_ADVICE: dict[StorageKind, str] = {
    "full": "free space on that file system (df -h {dir}); the queued messages stay in the outbox",
    "io": "the storage reports I/O errors (a failing SD card?): check `dmesg`",
    "damaged": "the outbox file is damaged, or the storage fails (check `dmesg`); see the "
    "README, 'Disk full, damaged outbox'",
    "readonly": "the file system is read-only (remounted after errors?): check `dmesg`",
    "busy": "another program holds a lock on the outbox file",
}


class OutboxError(Exception):
    """The outbox could not `doing` (open it, store, read, delete); nothing was changed."""

    def __init__(self, path: Path, doing: str, kind: StorageKind, detail: str) -> None:
        super().__init__(f"outbox {path}: cannot {doing}: {detail}")
        self.path = path
        self.doing = doing
        self.kind = kind
        self.detail = detail

    @property
    def advice(self) -> str:
        return _ADVICE[self.kind].format(dir=self.path.parent)


def _kind(exc: sqlite3.Error) -> StorageKind | None:
    name = getattr(exc, "sqlite_errorname", None)
    if isinstance(name, str):
        return next((kind for prefix, kind in _KIND_BY_NAME if name.startswith(prefix)), None)
    text = str(exc)
    return next((kind for needle, kind in _KIND_BY_TEXT if needle in text), None)


def free_bytes(directory: Path) -> int | None:
    try:
        stat = os.statvfs(directory)
    except OSError:
        return None
    return stat.f_bavail * stat.f_frsize


def as_outbox_error(exc: sqlite3.Error, path: Path, doing: str) -> OutboxError:
    """The OutboxError for a storage failure; a misuse of SQLite (a bug) is re-raised as is."""
    kind = _kind(exc)
    if kind is None:
        raise exc
    free = free_bytes(path.parent)
    if kind == "io" and free == 0:
        kind = "full"  # some file systems report ENOSPC on the WAL index as an I/O error
    detail = str(exc)
    if kind == "full" and free is not None:
        detail = f"{detail} ({free} bytes free in {path.parent})"
    return OutboxError(path, doing, kind, detail)


def damaged_error(path: Path, detail: str) -> SinkError:
    """Start-up refusal for a damaged file: nothing is deleted, and the way out keeps it."""
    wal, shm = f"{path.name}-wal", f"{path.name}-shm"
    return SinkError(
        f"{path}: the outbox file is damaged ({detail}); edgecam changed nothing",
        f"to keep its queued messages and start with a new outbox, move it together with its "
        f"{wal} and {shm} files: cd {path.parent} && mkdir -p damaged && mv {path.name}* "
        f"damaged/ ; `sqlite3 damaged/{path.name} .recover` extracts what is readable",
    )


def connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=5.0)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
        db.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT}")
    except BaseException:
        db.close()
        raise
    return db


def lock_exclusive(path: Path) -> IO[bytes]:
    """One publisher per outbox: two would deliver every message twice and race on deletes."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path.with_name(path.name + ".lock"), "ab")  # noqa: SIM115
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO):
            kind: StorageKind = "io" if exc.errno == errno.EIO else "full"
            raise OutboxError(path, "open it", kind, exc.strerror or str(exc)) from None
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


class AckMark:
    """`<outbox>.acked`: "every row with id <= N was acknowledged by the broker".

    Needed only when SQLite cannot delete acknowledged rows (a full disk): without it the
    next start would send them all again. It is one block, allocated while there is space and
    then overwritten in place, which needs no free block, so it can be written when SQLite
    cannot commit. It names the outbox it belongs to (a random id kept in the database), so a
    new database never skips rows because of an old mark.
    """

    SIZE = 4096
    _MAGIC = "edgecam-outbox-acked 1"

    def __init__(self, path: Path, outbox_id: int) -> None:
        self.path = path
        self._outbox_id = outbox_id
        self._fd: int | None = None
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            log.info("%s: no acknowledgement mark (%s)", path, exc.strerror)
            return
        try:
            if os.fstat(fd).st_size < self.SIZE:
                os.pwrite(fd, b"\n" * self.SIZE, 0)  # allocate the block now, while we can
        except OSError as exc:
            os.close(fd)
            log.info("%s: no acknowledgement mark (%s)", path, exc.strerror)
            return
        self._fd = fd

    def read(self) -> int:
        """N of a mark written for this outbox, else 0."""
        if self._fd is None:
            return 0
        try:
            words = os.pread(self._fd, 128, 0).decode("ascii", "replace").split()
        except OSError:
            return 0
        magic = " ".join(words[:2])
        if magic != self._MAGIC or len(words) < 4 or words[2] != str(self._outbox_id):
            return 0
        return int(words[3]) if words[3].isdigit() else 0

    def write(self, upto: int) -> bool:
        if self._fd is None:
            return False
        record = f"{self._MAGIC} {self._outbox_id} {upto}\n".encode().ljust(128, b"\n")
        try:
            return os.pwrite(self._fd, record, 0) == len(record)
        except OSError as exc:
            log.warning("%s: cannot write the acknowledgement mark: %s", self.path, exc.strerror)
            return False

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
