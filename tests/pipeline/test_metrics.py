"""Metrics: rolling percentiles match numpy's over the window, rates decay, memory from /proc."""

from __future__ import annotations

import mmap
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from edgecam.pipeline.metrics import (
    CpuMeter,
    RateMeter,
    RollingStat,
    cpu_temperature_c,
    peak_rss_mb,
    process_age_s,
    reset_peak_rss,
    rss_mb,
    system_busy_s,
)


def test_rolling_stat_percentiles_over_the_last_window() -> None:
    stat = RollingStat(window=100)
    values = np.arange(250, dtype=np.float64)
    for v in values:
        stat.add(float(v))
    window = values[-100:]  # only the last 100 samples count for percentiles
    p50, p95, p99 = stat.percentiles((50, 95, 99))
    assert (p50, p95, p99) == tuple(float(x) for x in np.percentile(window, (50, 95, 99)))
    assert stat.count == 250
    assert stat.mean == pytest.approx(values.mean())  # the mean is all-time
    assert sorted(stat.recent()) == list(window)


def test_rolling_stat_empty_and_summary() -> None:
    stat = RollingStat(window=8)
    assert stat.percentiles() == (0.0, 0.0) and stat.mean == 0.0
    for v in (1.0, 2.0, 3.0):
        stat.add(v)
    assert stat.summary() == {"mean": 2.0, "p50": 2.0, "p95": 2.9}
    with pytest.raises(ValueError, match="window"):
        RollingStat(window=0)


def test_rolling_stat_concurrent_adds_are_all_counted() -> None:
    stat = RollingStat(window=64)

    def writer() -> None:
        for _ in range(2000):
            stat.add(1.0)

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert stat.count == 8000 and stat.total == 8000.0


def test_rate_meter_counts_events_in_window_and_decays() -> None:
    start = 100.0
    meter = RateMeter(window_s=2.0, started=start)
    for i in range(40):  # 20 events per second for 2 s
        meter.mark(start + 1.0 + i * 0.05)
    assert meter.rate(start + 3.0) == pytest.approx(20.0)
    assert meter.rate(start + 4.0) == pytest.approx(10.0)  # half the events left the window
    assert meter.rate(start + 10.0) == 0.0


def test_cpu_meter_sees_busy_work() -> None:
    meter = CpuMeter()
    total = 0
    while meter.cpu_seconds() < 0.05:
        total += sum(range(1000))
    assert total > 0
    assert meter.percent() > 0.0


def test_rss_and_peak_from_proc() -> None:
    current, peak = rss_mb(), peak_rss_mb()
    assert 5.0 < current <= peak


def test_peak_rss_can_be_reset_per_phase() -> None:
    assert reset_peak_rss()  # forget whatever earlier tests peaked at
    # Our own mapping, so freeing it really returns the pages (malloc may keep them).
    block = mmap.mmap(-1, 64 * 1024 * 1024)
    pages = np.frombuffer(block, np.uint8)
    pages[:] = 1  # touch 64 MiB
    high = peak_rss_mb()
    del pages
    block.close()
    assert reset_peak_rss()
    assert peak_rss_mb() < high - 32


def test_memory_fields_parsed_from_a_status_file(tmp_path: Path) -> None:
    status = tmp_path / "status"
    status.write_text("Name:\tedgecam\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\n")
    assert rss_mb(status) == 100.0
    assert peak_rss_mb(status) == 200.0
    assert rss_mb(tmp_path / "missing") == 0.0


def test_process_age_is_positive_and_plausible() -> None:
    age = process_age_s()
    assert age is not None
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    assert 0.0 <= age <= uptime


def test_system_busy_time_excludes_idle_and_iowait(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    # user nice system idle iowait irq softirq steal guest guest_nice
    stat.write_text("cpu  100 20 30 5000 400 5 6 7 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n")
    ticks = os.sysconf("SC_CLK_TCK")
    assert system_busy_s(stat) == pytest.approx((100 + 20 + 30 + 5 + 6 + 7) / ticks)
    assert system_busy_s(tmp_path / "missing") is None
    real = system_busy_s()
    assert real is not None and real > 0


def _zone(root: Path, n: int, kind: str, millidegrees: str) -> None:
    zone = root / f"thermal_zone{n}"
    zone.mkdir(parents=True)
    (zone / "type").write_text(kind + "\n")
    (zone / "temp").write_text(millidegrees + "\n")


def test_cpu_temperature_prefers_the_cpu_zone(tmp_path: Path) -> None:
    """sysfs as a Raspberry Pi 5 and an x86 laptop lay it out (millidegrees Celsius)."""
    assert cpu_temperature_c(tmp_path / "none") is None  # a VM or container: no zones
    _zone(tmp_path, 0, "acpitz", "27800")
    _zone(tmp_path, 1, "iwlwifi_1", "-273000")  # an unplugged sensor: ignored
    _zone(tmp_path, 10, "x86_pkg_temp", "51234")
    assert cpu_temperature_c(tmp_path) == 51.2
    pi = tmp_path / "pi"
    _zone(pi, 0, "cpu-thermal", "48312")
    assert cpu_temperature_c(pi) == 48.3
    other = tmp_path / "other"
    _zone(other, 0, "board", "30500")
    (other / "thermal_zone1").mkdir()  # unreadable zone
    assert cpu_temperature_c(other) == 30.5
