"""Cheap runtime metrics: stage timings with rolling percentiles, event rates, CPU and memory.

Recording is O(1) (a store into a preallocated ring under a lock); percentiles are computed
only when somebody asks (the stats topic, the bench), so the per-frame cost stays in the
microseconds. Process CPU and memory come from the kernel (os.times, /proc/self/status) and
cost nothing until read.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import resource
import threading
import time
from collections import deque
from pathlib import Path

import numpy as np
import numpy.typing as npt

STATUS_FILE = Path("/proc/self/status")
STAT_FILE = Path("/proc/self/stat")
SYSTEM_STAT_FILE = Path("/proc/stat")
UPTIME_FILE = Path("/proc/uptime")
CLEAR_REFS_FILE = Path("/proc/self/clear_refs")


class RollingStat:
    """The last `window` samples of one quantity (ms), plus all-time count and mean."""

    def __init__(self, window: int = 512) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self._ring = np.zeros(window, np.float64)
        self._lock = threading.Lock()
        self.count = 0
        self.total = 0.0

    def add(self, value: float) -> None:
        with self._lock:
            self._ring[self.count % len(self._ring)] = value
            self.count += 1
            self.total += value

    def recent(self) -> npt.NDArray[np.float64]:
        """A copy of the samples in the window (unordered)."""
        with self._lock:
            return self._ring[: min(self.count, len(self._ring))].copy()

    @property
    def mean(self) -> float:
        """All-time mean (0.0 before the first sample)."""
        return self.total / self.count if self.count else 0.0

    def percentiles(self, qs: tuple[float, ...] = (50.0, 95.0)) -> tuple[float, ...]:
        """Percentiles over the window; zeros before the first sample."""
        data = self.recent()
        if not data.size:
            return tuple(0.0 for _ in qs)
        return tuple(float(v) for v in np.percentile(data, qs))

    def summary(self) -> dict[str, float]:
        p50, p95 = self.percentiles((50.0, 95.0))
        return {"mean": round(self.mean, 3), "p50": round(p50, 3), "p95": round(p95, 3)}


class RateMeter:
    """Events per second over the last `window_s` seconds (decays to 0 when events stop)."""

    def __init__(
        self, window_s: float = 5.0, max_events: int = 8192, started: float | None = None
    ) -> None:
        self.window_s = window_s
        self._times: deque[float] = deque(maxlen=max_events)
        self._lock = threading.Lock()
        self._started = time.monotonic() if started is None else started

    def mark(self, now: float | None = None) -> None:
        with self._lock:
            self._times.append(time.monotonic() if now is None else now)

    def rate(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        horizon = now - self.window_s
        with self._lock:
            while self._times and self._times[0] < horizon:
                self._times.popleft()
            count = len(self._times)
        span = min(self.window_s, now - self._started)
        return count / span if span > 0 else 0.0


class CpuMeter:
    """Process CPU % (all threads; 100 = one core busy) since the meter was created or reset."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        t = os.times()
        self._cpu = t.user + t.system
        self._wall = time.monotonic()

    def percent(self) -> float:
        t = os.times()
        wall = time.monotonic() - self._wall
        return 100.0 * (t.user + t.system - self._cpu) / wall if wall > 0 else 0.0

    def cpu_seconds(self) -> float:
        t = os.times()
        return t.user + t.system - self._cpu


def system_busy_s(stat_file: Path = SYSTEM_STAT_FILE) -> float | None:
    """CPU seconds all processes spent busy since boot (every core), None without /proc.

    Minus this process's own CPU time it tells how much other load ran during a measurement.
    """
    try:
        fields = stat_file.read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    # user nice system idle iowait irq softirq steal: idle and iowait are not busy.
    values = [int(v) for v in fields[1:9]]
    busy = sum(values) - values[3] - values[4]
    return busy / os.sysconf("SC_CLK_TCK")


def _status_kb(field: str, status_file: Path = STATUS_FILE) -> int | None:
    try:
        text = status_file.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None


def rss_mb(status_file: Path = STATUS_FILE) -> float:
    """Current resident set size in MiB (VmRSS); 0.0 where /proc is missing."""
    kb = _status_kb("VmRSS", status_file)
    return round(kb / 1024, 1) if kb is not None else 0.0


def peak_rss_mb(status_file: Path = STATUS_FILE) -> float:
    """Peak RSS in MiB: VmHWM (resettable, see reset_peak_rss), else getrusage's lifetime peak."""
    kb = _status_kb("VmHWM", status_file)
    if kb is None:
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return round(kb / 1024, 1)


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0) so a phase can measure its own peak."""
    try:
        CLEAR_REFS_FILE.write_text("5")
    except OSError:
        return False
    return True


def process_age_s() -> float | None:
    """Seconds since this process was exec'd (for start-up time), None without /proc."""
    try:
        start_ticks = int(STAT_FILE.read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(UPTIME_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))


THERMAL_DIR = Path("/sys/class/thermal")
#: Thermal zone types that measure the CPU/SoC (Raspberry Pi: cpu-thermal; x86: x86_pkg_temp).
_CPU_ZONE_HINTS = ("cpu", "soc", "x86_pkg", "package", "core")


def cpu_temperature_c(thermal_dir: Path = THERMAL_DIR) -> float | None:
    """CPU temperature in °C from sysfs, None where the kernel exposes none (VMs, containers).

    Prefers a zone whose type names the CPU/SoC, else the first readable zone.
    """
    zones = sorted(thermal_dir.glob("thermal_zone*"), key=lambda p: (len(p.name), p.name))
    readings: list[tuple[bool, float]] = []
    for zone in zones:
        try:
            kind = (zone / "type").read_text().strip().lower()
            value = int((zone / "temp").read_text().strip()) / 1000.0
        except (OSError, ValueError):
            continue
        if -50.0 < value < 150.0:  # a disconnected sensor reads e.g. -273 or 255
            readings.append((any(h in kind for h in _CPU_ZONE_HINTS), round(value, 1)))
    if not readings:
        return None
    return next((v for cpu, v in readings if cpu), readings[0][1])


M_ARENA_MAX = -8  # glibc mallopt parameter


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's per-thread malloc arenas (call before starting threads).

    glibc gives each thread that allocates its own arena (up to 8 per core), and frames
    decoded in one thread and freed in another leave each arena holding freed pages: measured
    5-6 MB of peak RSS in the pipelined arrangement, nothing in speed. False where the C
    library is not glibc (musl, macOS): nothing to do there.
    """
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_ARENA_MAX, arenas))
