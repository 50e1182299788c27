"""What adaptive execution chooses between, and the rules it chooses by.

An arrangement is how the per-frame stages run (one thread, or capture / inference / output
threads) and how many threads the interpreter gets; a trial is one arrangement measured on a
run's real frames. :mod:`edgecam.pipeline.execution` runs the trials and keeps the winner.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Mode = Literal["sequential", "pipelined"]
ModeSetting = Literal["auto", "sequential", "pipelined"]
#: Throughputs closer than this are a tie, decided by latency (noise on a shared machine).
TIE = 0.03
#: A live source must be kept up with: sequential is only eligible when it processes at
#: least this share of the rate the camera delivers (else it reads stale buffered frames).
LIVE_KEEP_UP = 0.95


def usable_cores() -> int:
    """Cores this process may run on (a cgroup/taskset limit counts), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True, order=True)
class Arrangement:
    """How the stages run: `threads` is the interpreter's thread count (None: the engine's,
    for engines that cannot change it)."""

    mode: Mode
    threads: int | None = None

    @property
    def label(self) -> str:
        return self.mode if self.threads is None else f"{self.mode}/{self.threads}"

    @classmethod
    def parse(cls, label: str) -> Arrangement | None:
        mode, _, threads = label.partition("/")
        if mode not in ("sequential", "pipelined"):
            return None
        if not threads:
            return cls(mode)  # type: ignore[arg-type]
        return cls(mode, int(threads)) if threads.isdigit() else None  # type: ignore[arg-type]


@dataclass(frozen=True)
class Budget:
    """How long one calibration segment runs: `warmup` results are not measured (threads
    starting, queues filling), then at least `min_frames` results and `min_s` seconds, or
    `max_s` seconds for slow models."""

    warmup: int = 2
    min_frames: int = 5
    min_s: float = 0.25
    max_s: float = 0.6


@dataclass(frozen=True)
class Trial:
    """One arrangement measured on real frames. fps: results per second after the warm-up;
    input_fps: frames the source delivered per second (a camera's real rate)."""

    arrangement: Arrangement
    frames: int
    seconds: float
    fps: float
    input_fps: float
    latency_ms: float
    stages_ms: Mapping[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "arrangement": self.arrangement.label,
            "frames": self.frames,
            "seconds": round(self.seconds, 3),
            "fps": round(self.fps, 2),
            "input_fps": round(self.input_fps, 2),
            "latency_ms": round(self.latency_ms, 2),
            "stages_ms": {k: round(v, 3) for k, v in self.stages_ms.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Trial | None:
        try:
            arrangement = Arrangement.parse(str(data["arrangement"]))
            if arrangement is None:
                return None
            return cls(
                arrangement,
                int(data["frames"]),
                float(data["seconds"]),
                float(data["fps"]),
                float(data.get("input_fps", 0.0)),
                float(data["latency_ms"]),
                {str(k): float(v) for k, v in dict(data.get("stages_ms", {})).items()},
            )
        except (KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True)
class Step:
    """The next segment of a run: an arrangement, and a calibration budget (None: run until
    the end, a stop or a drift re-check)."""

    arrangement: Arrangement
    budget: Budget | None = None


def candidates(
    mode: ModeSetting, threads: int | None, cores: int, switchable: bool
) -> list[Arrangement]:
    """What `auto` chooses from. Sequential only with every core for the interpreter: with
    one thread doing everything, a core left to nobody is never faster."""
    if not switchable:
        modes: Sequence[Mode] = ("sequential", "pipelined") if mode == "auto" else (mode,)
        return [Arrangement(m) for m in modes]
    all_or_one_fewer = sorted({max(1, cores - 1), cores}, reverse=True)
    counts = [threads] if threads is not None else all_or_one_fewer
    out: list[Arrangement] = []
    if mode in ("auto", "sequential"):
        out.append(Arrangement("sequential", counts[0]))
    if mode in ("auto", "pipelined"):
        out += [Arrangement("pipelined", n) for n in counts]
    return out


def pick(trials: Sequence[Trial], *, live: bool) -> Trial:
    """The fastest trial; within TIE of the best throughput the lower latency wins.

    Live sources: throughput beyond the camera's rate is worth nothing, so every arrangement
    that keeps up with the rate the camera delivered (LIVE_KEEP_UP) is as good as the best,
    and the lowest latency among them wins. A sequential trial that could not keep up is
    out (it would read stale, buffered frames) unless nothing kept up.
    """
    eligible = list(trials)
    if live:
        camera = camera_rate(trials)
        keeping_up = [t for t in trials if t.fps >= LIVE_KEEP_UP * camera]
        if keeping_up:
            return min(keeping_up, key=lambda t: (t.latency_ms, -t.fps))
        eligible = [t for t in trials if t.arrangement.mode != "sequential"] or eligible
    best = max(t.fps for t in eligible)
    close = [t for t in eligible if t.fps >= best * (1 - TIE)]
    return min(close, key=lambda t: (t.latency_ms, -t.fps))


def camera_rate(trials: Sequence[Trial]) -> float:
    """The rate the camera delivers, as the trials saw it.

    A pipelined trial's capture thread reads every frame the camera delivers, so its input
    rate is the camera's; a sequential one reads only when it is free, so its input rate is
    its own speed. Of the pipelined trials the lowest rate is taken: a segment's first frames
    may come in a burst of what the driver buffered, which only ever inflates the rate (a
    10 fps camera measured 10.4 and 11.2 fps in two 1.4 s segments; taking 11.2 ruled out
    every arrangement, sequential first, and live latency went up by a third).
    """
    independent = [t.input_fps for t in trials if t.arrangement.mode != "sequential"]
    return min(independent) if independent else max(t.input_fps for t in trials)


def merge_trials(trials: Sequence[Trial]) -> list[Trial]:
    """One trial per arrangement: rounds of the same arrangement pooled frame-weighted."""
    by: dict[Arrangement, list[Trial]] = {}
    for trial in trials:
        by.setdefault(trial.arrangement, []).append(trial)
    out = []
    for arrangement, group in by.items():
        frames = sum(t.frames for t in group)
        seconds = sum(t.seconds for t in group)
        stages = {
            stage: sum(t.stages_ms.get(stage, 0.0) * t.frames for t in group) / frames
            for stage in group[-1].stages_ms
        }
        out.append(
            Trial(
                arrangement,
                frames,
                seconds,
                frames / seconds if seconds > 0 else 0.0,
                max(t.input_fps for t in group),
                sum(t.latency_ms * t.frames for t in group) / frames,
                stages,
            )
        )
    return out
