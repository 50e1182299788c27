"""Health of the running job, read from what already counts it (nothing is counted twice).

Frames, drops and stage timings come from the pipeline (``progress()`` and ``stats()``, the
same provider the MQTT `stats` topic uses), broker state and outbox depth from the MQTT sink's
``counters()``, reconnects from the live source; CPU temperature from the kernel's thermal
zones where the board has them (a Raspberry Pi's `cpu-thermal`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from edgecam.core.payload import build_stats_payload
from edgecam.pipeline.metrics import CpuMeter, process_age_s, rss_mb
from edgecam.pipeline.pipeline import PipelineStats

THERMAL = Path("/sys/class/thermal")
#: pipeline.stats() is not free (percentiles over the window): at most once per this many s.
STATS_MIN_INTERVAL_S = 1.0


class PipelineLike(Protocol):
    def progress(self) -> PipelineStats: ...

    def stats(self) -> dict[str, Any]: ...


class MqttLike(Protocol):
    def counters(self) -> dict[str, Any]: ...


def cpu_temperature_c(root: Path = THERMAL) -> float | None:
    """The CPU's temperature in °C: the zone typed cpu/soc, else the first; None if absent."""
    zones = sorted(root.glob("thermal_zone*"))
    if not zones:
        return None

    def kind(zone: Path) -> str:
        try:
            return (zone / "type").read_text().strip().lower()
        except OSError:
            return ""

    preferred = [z for z in zones if any(k in kind(z) for k in ("cpu", "soc", "x86_pkg"))]
    for zone in preferred or zones:
        try:
            return round(int((zone / "temp").read_text().strip()) / 1000, 1)
        except (OSError, ValueError):
            continue
    return None


@dataclass(frozen=True)
class RunInfo:
    """Fixed facts about this run, shown on the page and in `edgecam_info`."""

    device_id: str
    run_id: str
    model: str
    task: str
    labels: tuple[str, ...]
    runtime: str
    runtime_version: str
    threads: int
    source: str
    events: bool
    version: str


class RunView:
    """Read-only access to the running job's counters, safe from any web thread."""

    def __init__(
        self,
        info: RunInfo,
        *,
        pipeline: Callable[[], PipelineLike | None],
        mqtt: MqttLike | None,
        source: object,
        last_result: Callable[[], float | None],
        max_age_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.info = info
        self._pipeline = pipeline
        self._mqtt = mqtt
        self._source = source
        self._last_result = last_result
        self._max_age_s = max_age_s
        self._clock = clock
        self._lock = threading.Lock()
        self._stats: tuple[float, dict[str, Any]] | None = None
        self._frames_seen: tuple[int, float] | None = None  # (frames_in, when it last changed)
        self._cpu = CpuMeter()
        self._cpu_at = clock()
        self._cpu_value = 0.0

    def progress(self) -> PipelineStats | None:
        pipeline = self._pipeline()
        return pipeline.progress() if pipeline is not None else None

    def pipeline_stats(self) -> dict[str, Any]:
        """pipeline.stats(), cached for STATS_MIN_INTERVAL_S (many clients, one computation)."""
        pipeline = self._pipeline()
        if pipeline is None:
            return {}
        now = self._clock()
        with self._lock:
            if self._stats is not None and now - self._stats[0] < STATS_MIN_INTERVAL_S:
                return self._stats[1]
            stats = pipeline.stats()
            self._stats = (now, stats)
            return stats

    def mqtt_counters(self) -> dict[str, Any] | None:
        return self._mqtt.counters() if self._mqtt is not None else None

    def source_state(self) -> dict[str, Any]:
        state = getattr(self._source, "state", None)
        reconnects = getattr(self._source, "reconnects", None)
        return {
            "name": self.info.source,
            "live": bool(getattr(self._source, "live", False)),
            "state": state if isinstance(state, str) else "ok",
            "reconnects": reconnects if isinstance(reconnects, int) else 0,
        }

    def health(self) -> tuple[bool, str]:
        """(healthy, why): frames must have arrived within max_age_s (captured or inferred)."""
        now = self._clock()
        progress = self.progress()
        with self._lock:
            if progress is not None and (
                self._frames_seen is None or progress.frames_in != self._frames_seen[0]
            ):
                self._frames_seen = (progress.frames_in, now)
            changed = self._frames_seen[1] if self._frames_seen and self._frames_seen[0] else None
        last = max((t for t in (changed, self._last_result()) if t is not None), default=None)
        source = self.source_state()
        if source["state"] != "ok":
            return False, f"source {source['state']}"
        if last is None:
            return False, "no frame yet"
        age = now - last
        if age > self._max_age_s:
            return False, f"no frame for {age:.0f} s"
        return True, "frames flowing"

    def stats_payload(self) -> dict[str, Any]:
        """The MQTT `stats` payload (docs/mqtt.md); `mqtt` is null when MQTT is off."""
        payload = build_stats_payload(
            device_id=self.info.device_id,
            run_id=self.info.run_id,
            model=self.info.model,
            now=time.time(),
            uptime_s=process_age_s() or 0.0,
            cpu_percent=self._cpu_percent(),
            rss_mb=rss_mb(),
            pipeline=self.pipeline_stats(),
            mqtt=self.mqtt_counters() or {},
        )
        if self._mqtt is None:
            payload["mqtt"] = None
        return payload

    def _cpu_percent(self) -> float:
        """Process CPU % over the last second or more (many clients share one window)."""
        with self._lock:
            now = self._clock()
            if now - self._cpu_at >= 1.0:
                self._cpu_value, self._cpu_at = self._cpu.percent(), now
                self._cpu.reset()
            return self._cpu_value

    def health_payload(self, extra: Mapping[str, Any]) -> dict[str, Any]:
        """Everything the Health tab shows that the stats payload does not carry."""
        healthy, reason = self.health()
        info = self.info
        return {
            "healthy": healthy,
            "reason": reason,
            "device_id": info.device_id,
            "run_id": info.run_id,
            "version": info.version,
            "model": info.model,
            "task": info.task,
            "runtime": {
                "name": info.runtime,
                "version": info.runtime_version,
                "threads": info.threads,
            },
            "source": self.source_state(),
            "events": info.events,
            "cpu_temperature_c": cpu_temperature_c(),
            **extra,
        }
