"""The snapshot directory: JPEGs of events on disk, bounded by file count and bytes."""

from __future__ import annotations

import logging
import os
import re
import tempfile
from pathlib import Path

from edgecam.errors import SinkError

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class SnapshotStore:
    """A directory of JPEGs bounded by file count and total bytes; the oldest go first.

    Writes are atomic (temp file + rename) so a reader never sees half a JPEG; the directory
    is re-scanned on every save so files removed by hand or by another run are accounted for.
    """

    def __init__(self, directory: Path, *, max_files: int = 200, max_bytes: int = 100_000_000):
        if max_files < 1 or max_bytes < 1:
            raise ValueError(f"max_files and max_bytes must be >= 1, got {max_files}, {max_bytes}")
        self.directory = Path(directory)
        self.max_files = max_files
        self.max_bytes = max_bytes
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SinkError(
                f"snapshots dir {self.directory}: cannot create it: {exc.strerror}",
                "set [snapshots] dir to a writable directory",
            ) from exc

    def save(self, name: str, data: bytes) -> Path:
        """Write ``data`` as ``name`` (sanitised) and prune; returns the file's path."""
        target = self.directory / (_UNSAFE.sub("_", Path(name).name) or "snapshot.jpg")
        try:
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".jpg")
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, target)
        except OSError as exc:
            raise SinkError(f"snapshot {target}: cannot write: {exc.strerror}") from exc
        self.prune()
        return target

    def files(self) -> list[Path]:
        """Stored snapshots, oldest first (modification time, then name)."""
        entries = []
        for path in self.directory.glob("*.jpg"):
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            entries.append((stat.st_mtime_ns, path.name, path, stat.st_size))
        entries.sort()
        return [e[2] for e in entries]

    def prune(self) -> int:
        """Delete the oldest snapshots until both limits hold; returns how many were removed."""
        files = self.files()
        sizes = [p.stat().st_size if p.exists() else 0 for p in files]
        total, removed = sum(sizes), 0
        for path, size in zip(files, sizes, strict=True):
            if len(files) - removed <= self.max_files and total <= self.max_bytes:
                break
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("snapshot %s: cannot delete: %s", path, exc.strerror)
                continue
            removed += 1
            total -= size
        return removed
