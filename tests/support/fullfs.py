"""Real failing storage for the outbox tests: a small tmpfs the test fills to the last block
(disk full), and a loop-mounted ext4 the test shuts down (every I/O then fails with EIO).

Why a real mount and not a mock or a page limit: SQLite, the kernel and the outbox must meet
the same ENOSPC an SD card gives (SQLITE_FULL on the WAL append, failing deletes, an -shm
that cannot grow), including the corners nobody thought to mock. A tmpfs with `size=` is the
smallest real file system (no loop device, no mkfs) and holds exactly what it was given.

Mounting needs CAP_SYS_ADMIN (root, as in CI and on this development machine). Without it
the test FAILS with that requirement: RLIMIT_FSIZE, the nearest unprivileged stand-in, gives
EFBIG (SQLITE_IOERR, not SQLITE_FULL) and a SIGXFSZ, which is not what a full disk does.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import struct
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

FILLER = "filler.bin"


@dataclass
class FullFs:
    """A mounted tmpfs; `fill()` takes every free block, `free_up()` gives them back."""

    root: Path
    size: int

    def fill(self) -> int:
        """Write a filler file until ENOSPC; returns the bytes it took."""
        taken = 0
        chunk = b"\0" * 4096
        fd = os.open(self.root / FILLER, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            while True:
                try:
                    taken += os.write(fd, chunk)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
        finally:
            os.close(fd)
        assert self.free() == 0, f"{self.root} still has {self.free()} bytes free"
        return taken

    def free_up(self) -> None:
        (self.root / FILLER).unlink(missing_ok=True)

    def free(self) -> int:
        stat = os.statvfs(self.root)
        return stat.f_bavail * stat.f_frsize


def _mount_tmpfs(target: Path, size: int) -> str | None:
    """None when mounted, else why not (one line)."""
    mount = shutil.which("mount")
    if mount is None:
        return "the `mount` command is missing (apt-get install mount)"
    proc = subprocess.run(
        [mount, "-t", "tmpfs", "-o", f"size={size},mode=0755", "edgecam-test", str(target)],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    return None if proc.returncode == 0 else proc.stderr.strip() or f"mount exit {proc.returncode}"


@contextlib.contextmanager
def mounted_tmpfs(root: Path, size: int) -> Iterator[FullFs]:
    """A `size`-byte tmpfs at `root` (created), unmounted on exit; fails without CAP_SYS_ADMIN."""
    root.mkdir(parents=True, exist_ok=True)
    why = _mount_tmpfs(root, size)
    if why is not None:
        pytest.fail(
            f"cannot mount a {size}-byte tmpfs at {root} ({why}): the disk-full tests need "
            "CAP_SYS_ADMIN (run them as root, as CI does)",
            pytrace=False,
        )
    try:
        yield FullFs(root, size)
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False, timeout=30)


@pytest.fixture
def full_fs(tmp_path: Path) -> Iterator[FullFs]:
    """A 4 MiB tmpfs under tmp_path (unmounted afterwards), not yet full."""
    with mounted_tmpfs(tmp_path / "smallfs", 4 * 1024 * 1024) as fs:
        yield fs


# ext4's FS_IOC_SHUTDOWN (_IOR('X', 125, __u32)) with EXT4_GOING_FLAGS_NOLOGFLUSH: from then on
# every read and write on that file system fails with EIO, as on a dying SD card.
EXT4_IOC_SHUTDOWN = 0x8004587D
EXT4_GOING_FLAGS_NOLOGFLUSH = 2


@dataclass
class FailingFs:
    """A loop-mounted ext4 that `shut_down()` turns into a disk answering only EIO."""

    root: Path

    def shut_down(self) -> None:
        fd = os.open(self.root, os.O_RDONLY)
        try:
            fcntl.ioctl(fd, EXT4_IOC_SHUTDOWN, struct.pack("I", EXT4_GOING_FLAGS_NOLOGFLUSH))
        finally:
            os.close(fd)


@pytest.fixture
def failing_fs(tmp_path: Path) -> Iterator[FailingFs]:
    """A 32 MiB ext4 image, loop-mounted under tmp_path (needs root, mkfs.ext4, loop devices)."""
    image, root = tmp_path / "ext4.img", tmp_path / "ext4"
    root.mkdir()
    with image.open("wb") as out:
        out.truncate(32 * 1024 * 1024)
    steps = [["mkfs.ext4", "-q", "-F", str(image)], ["mount", "-o", "loop", str(image), str(root)]]
    for step in steps:
        proc = subprocess.run(step, capture_output=True, text=True, check=False, timeout=60)
        if proc.returncode != 0:
            pytest.fail(
                f"{' '.join(step)} failed ({proc.stderr.strip()}): the I/O-error tests need "
                "root, e2fsprogs and a loop device (run them as root, as CI does)",
                pytrace=False,
            )
    try:
        yield FailingFs(root)
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False, timeout=60)
        image.unlink(missing_ok=True)
