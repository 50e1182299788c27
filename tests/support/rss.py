"""Run a command and read its own peak RSS from the kernel (wait4), not the test process's."""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Finished:
    returncode: int
    peak_rss_mb: float  # ru_maxrss of that one child: KiB on Linux
    stderr: str


def run_measured(
    argv: Sequence[str], *, cwd: Path, env: dict[str, str], timeout_s: float = 120
) -> Finished:
    """Run `argv` to completion (stdout discarded) and return its exit code, peak RSS and
    stderr. wait4() on the child's own pid gives its rusage alone, so earlier children of the
    test process (brokers, other commands) cannot inflate the figure. Killed after timeout_s."""
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=err)
        killer = threading.Timer(timeout_s, proc.kill)
        killer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            killer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped: tell Popen
        err.seek(0)
        text = err.read().decode("utf-8", "replace")
    return Finished(proc.returncode, usage.ru_maxrss / 1024, text)
