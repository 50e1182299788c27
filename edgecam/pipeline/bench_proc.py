"""Whole-process benchmark modes: `edgecam run` as users start it, and the plain loop.

Both run as child processes, so each pays its own interpreter start, imports, model load and
teardown: the wall clock from spawn to exit is what a user waits for. Peak RSS comes from the
kernel's accounting of the child (wait4), not from sampling. Rounds alternate the two, so a
noisy neighbour hits both alike, and the ratio is taken per round.

`reencode` makes the decode-heavy input of the README table: the source re-encoded by
OpenCV's VideoWriter as MJPEG at another size, into a directory the caller deletes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgecam.errors import SourceError

#: `edgecam run` logs its arrangement at INFO: "execution: <mode>[, interpreter on N thread(s)]
#: (<how it was chosen>...". The bench reads it back to report what auto picked.
_EXECUTION_LINE = re.compile(
    r"execution: (?P<mode>sequential|pipelined)"
    r"(?:, interpreter on (?P<threads>\d+) thread\(s\))? \((?P<how>[^:)]+)"
)


POLL_S = 0.01


@dataclass
class ProcessRun:
    """One child process: wall clock from spawn to exit, frames written, peak RSS."""

    elapsed_s: float
    frames: int
    peak_rss_mb: float
    cpu_s: float = 0.0
    first_result_s: float | None = None
    execution: dict[str, Any] = field(default_factory=dict)

    @property
    def fps(self) -> float:
        return self.frames / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def cpu_ms_per_frame(self) -> float:
        """The whole process's CPU (start-up included) per frame: what other load distorts
        least, so the efficiency comparison that survives a busy machine."""
        return 1000 * self.cpu_s / self.frames if self.frames else 0.0


def _peak_kib(pid: int) -> int:
    """VmHWM of a running process (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def child_env() -> dict[str, str]:
    """This environment, minus PYTHONDONTWRITEBYTECODE: an installed edgecam (and the plain
    loop's own imports) start from compiled bytecode, as a user's would; with the variable
    set, every start would compile edgecam's ~70 modules again (0.3 s measured here)."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


@dataclass(frozen=True)
class _Exit:
    elapsed_s: float
    peak_rss_mb: float
    cpu_s: float


def _spawn(cmd: list[str], stderr_path: Path, env: dict[str, str] | None) -> _Exit:
    """Run to completion: wall seconds, peak RSS, CPU seconds. Raises on a non-zero exit.

    The peak is the child's own VmHWM, sampled every POLL_S until it exits: wait4's
    ru_maxrss would report this (bigger) process, because subprocess starts the child with
    vfork and the kernel carries the pre-exec memory into the child's maximum. Its CPU time
    (user + system, all threads) comes from wait4 and does not depend on other load.
    """
    peak = 0
    with stderr_path.open("wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env)
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            peak = max(peak, _peak_kib(proc.pid))
            time.sleep(POLL_S)
        elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = stderr_path.read_text(errors="replace").strip().splitlines()[-3:]
        raise SourceError(f"{cmd[2]} exited with {proc.returncode}: {' | '.join(tail)}")
    return _Exit(elapsed, peak / 1024, usage.ru_utime + usage.ru_stime)


def _lines(path: Path) -> list[bytes]:
    try:
        return path.read_bytes().splitlines()
    except FileNotFoundError:
        return []


def run_plain(
    *,
    model: Path,
    runtime: str,
    threads: int,
    labels: Path | None,
    source: str,
    frames: int,
    workdir: Path,
) -> ProcessRun:
    """The plain loop (edgecam.pipeline.plainloop) in its own process."""
    out = workdir / "plain.jsonl"
    out.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "edgecam.pipeline.plainloop", "--model", str(model)]
    cmd += ["--source", source, "--frames", str(frames), "--output", str(out)]
    cmd += ["--threads", str(threads), "--runtime", runtime]
    if labels is not None:
        cmd += ["--labels", str(labels)]
    done = _spawn(cmd, workdir / "plain.err", child_env())
    return ProcessRun(done.elapsed_s, len(_lines(out)), done.peak_rss_mb, done.cpu_s)


def run_edgecam(
    run_args: list[str], *, source: str, frames: int, workdir: Path, env: dict[str, str] | None
) -> ProcessRun:
    """`edgecam run` with its defaults (plus `run_args`, e.g. the model), JSON lines to a file."""
    out = workdir / "run.jsonl"
    out.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "edgecam", "--log-level", "info", "run", *run_args]
    cmd += ["--source", source, "--max-frames", str(frames), "--output", str(out)]
    spawned_at = time.time()
    done = _spawn(cmd, workdir / "run.err", env)
    lines = _lines(out)
    first = None
    if lines:
        payload = json.loads(lines[0])
        done_ms = payload["captured_ms"] + (payload["latency_ms"].get("end_to_end") or 0.0)
        first = round(done_ms / 1000 - spawned_at, 3)
    return ProcessRun(
        done.elapsed_s,
        len(lines),
        done.peak_rss_mb,
        done.cpu_s,
        first,
        parse_execution(workdir / "run.err"),
    )


def parse_execution(log_path: Path) -> dict[str, Any]:
    """The last arrangement `edgecam run` logged (a re-check may have changed it)."""
    found: dict[str, Any] = {}
    for line in log_path.read_text(errors="replace").splitlines():
        if "execution: measuring" in line:  # the run ended before the measurement did
            found = {"mode": None, "threads": None, "chosen_by": "calibrating"}
        match = _EXECUTION_LINE.search(line)
        if match:
            threads = match.group("threads")
            found = {
                "mode": match.group("mode"),
                "threads": int(threads) if threads else None,
                "chosen_by": match.group("how").strip(),
            }
    return found


def reencode(source: str, size: tuple[int, int], frames: int, directory: Path) -> Path:
    """The first `frames` frames of `source`, resized to `size`, as an MJPEG AVI in
    `directory` (decode-heavy input: every frame a full JPEG)."""
    import cv2

    path = directory / f"reencoded-{size[0]}x{size[1]}.avi"
    capture = cv2.VideoCapture(source)
    fps = capture.get(cv2.CAP_PROP_FPS) or 10.0
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, size)
    written = 0
    try:
        while written < frames:
            ok, frame = capture.read()
            if not ok:
                break
            writer.write(cv2.resize(frame, size, interpolation=cv2.INTER_CUBIC))
            written += 1
    finally:
        writer.release()
        capture.release()
    if not written:
        raise SourceError(f"{source}: no frame could be read to re-encode")
    return path
