"""Adaptive execution: the arrangement of the per-frame stages is measured, not assumed.

On a small board every thread competes with the interpreter's own worker threads. A capture
thread that decodes while XNNPACK runs steals a core from it; giving the interpreter one core
fewer makes every invoke slower; one thread doing everything leaves the interpreter idle while
a frame decodes. Which of these wins depends on the machine, the model, the source's decode
cost and the outputs (measured on a 2-core x86: the three-thread pipeline lost to a plain
one-thread loop on a small H.264 video and won on 1080p MJPEG). So with ``pipeline.mode =
"auto"`` a run starts with a short calibration: a few hundred milliseconds of real frames in
each candidate arrangement (their results are delivered like any other), the fastest is kept
and cached per machine, model, runtime and kind of source, and the stage costs it was chosen
with are compared with the running ones every ``pipeline.recheck_s`` (a cached choice twice
within its first seconds, since it was measured at another time): when they drift (a busier
scene, a hotter board, other load), it measures again.

Arrangements: ``sequential`` (one thread does every stage; the interpreter gets all cores)
and ``pipelined`` (capture + preprocessing, inference, output in three threads) with the
interpreter on all cores or one fewer. ``pipeline.mode`` and ``model.threads`` (``--threads``)
pin what they name; only the rest is measured.
"""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from edgecam.pipeline.arrangements import (
    TIE,
    Arrangement,
    Budget,
    Step,
    Trial,
    candidates,
    merge_trials,
    pick,
    usable_cores,
)
from edgecam.runtime.cache import ChoiceCache

if TYPE_CHECKING:
    from edgecam.config.pipeline import PipelineSection

log = logging.getLogger(__name__)

SECTION = "execution"  # of the ChoiceCache
#: Part of the cache key: a choice made by older selection rules is measured again once.
POLICY = "pick2"
#: A stage whose mean moved by more than this fraction (and more than DRIFT_FLOOR of the
#: invoke time) may change which arrangement is fastest.
DRIFT = 0.35
DRIFT_FLOOR = 0.05
#: A choice read from the cache was measured at another time (another load, another scene):
#: its stage costs are compared after this many seconds of running, twice, then every
#: recheck_s.
CACHE_CHECK_S = 3.0


def machine_id() -> str:
    """Architecture, CPU model and usable cores: what makes a measurement valid elsewhere."""
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                name, _, value = line.partition(":")
                if name.strip() in ("model name", "Model", "Hardware") and value.strip():
                    model = value.strip()
                    break
    except OSError:
        pass
    return f"{platform.machine()}|{model}|{usable_cores()}"


class AdaptiveExecution:
    """Decides each segment's arrangement; see the module docstring for the policy.

    Used by one pipeline run from its supervising thread only. `key` identifies the model and
    runtime (the cache adds the machine and the source signature); cache None: measure at
    every start and remember nothing.
    """

    def __init__(
        self,
        arrangements: Sequence[Arrangement],
        *,
        key: str = "",
        cache: ChoiceCache | None = None,
        recheck_s: float = 60.0,
        budget: Budget | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not arrangements:
            raise ValueError("AdaptiveExecution needs at least one arrangement")
        self.arrangements = list(arrangements)
        self.key = key
        self.cache = cache
        self.recheck_s = recheck_s
        self.budget = budget or Budget()
        self._clock = clock
        self._live = False
        self.signature = ""
        self._cache_key = ""
        self._queue: list[Arrangement] = []
        self._trials: list[Trial] = []
        self._round = 0
        self.chosen: Arrangement = self.arrangements[0]
        self.chosen_by = "config" if len(self.arrangements) == 1 else "pending"
        self.figures: list[Trial] = []
        self.reference: dict[str, float] = {}
        self.rechecks = 0
        self.calibrated_at: float | None = None
        self._drift_seen = 0
        self._cache_checks = 0

    @property
    def calibrating(self) -> bool:
        return bool(self._queue)

    # -- the segment sequence ----------------------------------------------------------------

    def start(self, signature: str, *, live: bool, current_threads: int | None = None) -> Step:
        """First step, once the first frame told what kind of source this is."""
        self._live = live
        self.signature = signature
        self._cache_key = f"{machine_id()}|{self.key}|{signature}|{POLICY}|" + ",".join(
            a.label for a in self.arrangements
        )
        if len(self.arrangements) == 1:
            self._log_choice()
            return Step(self.chosen)
        hit = self._cached()
        if hit is not None:
            return Step(self.chosen)
        self._begin_calibration(current_threads)
        return Step(self._queue[0], self.budget)

    def after(self, arrangement: Arrangement, outcome: str, trial: Trial | None) -> Step:
        """Next step after a segment ended with `outcome` "budget" (a calibration segment
        reached its budget) or "recheck" (stage costs drifted)."""
        if outcome == "recheck":
            self.rechecks += 1
            self._begin_calibration(arrangement.threads)
            return Step(self._queue[0], self.budget)
        if self._queue and self._queue[0] == arrangement:
            self._queue.pop(0)
            if trial is not None:
                self._trials.append(trial)
        if self._queue:
            return Step(self._queue[0], self.budget)
        self._decide()
        if self._queue:  # a tie-break round was queued
            return Step(self._queue[0], self.budget)
        return Step(self.chosen)

    def _begin_calibration(self, current_threads: int | None) -> None:
        """Two interleaved rounds (A B C, then C B A), pooled per arrangement: a load that
        comes or goes during the measurement then hits every candidate alike. Trials start
        with the interpreter's current thread count, and the mirrored second round starts
        where the first ended, so the thread count changes as rarely as possible."""
        self._trials, self._round = [], 0
        order = sorted(
            self.arrangements, key=lambda a: (a.threads != current_threads, a.mode, a.threads)
        )
        self._queue = order + order[::-1]
        self.chosen_by = "calibrating"
        log.info(
            "execution: measuring %s on this run's frames, twice (%s)",
            ", ".join(a.label for a in order),
            "re-check" if self.rechecks else f"nothing cached for {self.signature}",
        )

    def _decide(self) -> None:
        measured = [t for t in self._trials if t.frames >= 2 and t.fps > 0]
        if not measured:  # nothing measurable (e.g. a motion gate skipped every frame)
            self.chosen_by = "default"
            self._log_choice()
            return
        merged = merge_trials(measured)
        best = pick(merged, live=self._live)
        runner_up = [t for t in merged if t is not best and t.fps >= best.fps * (1 - 2 * TIE)]
        if runner_up and self._round == 0:
            # Too close to call on a noisy machine: one more round of the two contenders.
            self._round = 1
            rival = max(runner_up, key=lambda t: t.fps)
            self._queue = [rival.arrangement, best.arrangement]
            return
        self.chosen, self.figures = best.arrangement, sorted(merged, key=lambda t: -t.fps)
        self.reference = dict(best.stages_ms)
        self.chosen_by = "calibration"
        self.calibrated_at = time.time()
        self._drift_seen = 0
        self._cache_checks = 0
        self._log_choice()
        self._remember()

    # -- drift ---------------------------------------------------------------------------------

    def next_check_s(self) -> float:
        """Seconds until the next drift check (0: none)."""
        if self.recheck_s <= 0:
            return 0.0
        if self.chosen_by == "cache" and self._cache_checks < 2:
            return min(self.recheck_s, CACHE_CHECK_S)
        return self.recheck_s

    def drifted(self, stages_ms: Mapping[str, float]) -> bool:
        """True when the running stage costs differ enough from the calibration's to re-check
        (twice in a row, so one busy moment does not trigger it). Call every recheck_s."""
        if self.recheck_s <= 0 or len(self.arrangements) < 2 or self.calibrating:
            return False
        if self.chosen_by == "cache":
            self._cache_checks += 1
        reference = self.reference
        if not reference:
            return False
        floor = DRIFT_FLOOR * reference.get("invoke", 0.0)
        moved = [
            stage
            for stage, ref in reference.items()
            if stage in stages_ms and abs(stages_ms[stage] - ref) > max(floor, DRIFT * ref)
        ]
        self._drift_seen = self._drift_seen + 1 if moved else 0
        if self._drift_seen >= 2:
            log.info(
                "execution: stage costs drifted (%s); measuring the arrangements again",
                ", ".join(f"{s} {reference[s]:.2f} -> {stages_ms[s]:.2f} ms" for s in moved),
            )
            self._drift_seen = 0
            return True
        return False

    # -- cache, log, report --------------------------------------------------------------------

    def _cached(self) -> dict[str, Any] | None:
        if self.cache is None:
            return None
        hit = self.cache.get(SECTION, self._cache_key)
        chosen = Arrangement.parse(str(hit.get("arrangement", ""))) if hit else None
        if hit is None or chosen not in self.arrangements or chosen is None:
            return None
        self.chosen, self.chosen_by = chosen, "cache"
        self.figures = [t for t in map(Trial.from_dict, hit.get("trials", [])) if t is not None]
        self.reference = {str(k): float(v) for k, v in dict(hit.get("stages_ms", {})).items()}
        self._log_choice()
        return hit

    def _remember(self) -> None:
        if self.cache is None:
            return
        self.cache.put(
            SECTION,
            self._cache_key,
            {
                "arrangement": self.chosen.label,
                "signature": self.signature,
                "model": self.key,
                "trials": [t.as_dict() for t in self.figures],
                "stages_ms": {k: round(v, 3) for k, v in self.reference.items()},
            },
        )

    def _log_choice(self) -> None:
        figures = ", ".join(
            f"{t.arrangement.label} {t.fps:.1f} fps (latency {t.latency_ms:.1f} ms)"
            for t in self.figures
        )
        log.info(
            "execution: %s (%s%s)",
            describe(self.chosen),
            {"cache": "cached measurement", "calibration": "measured now"}.get(
                self.chosen_by, self.chosen_by
            ),
            f": {figures}" if figures else "",
        )

    def report(self) -> dict[str, Any]:
        """The `execution` object of the stats message (documented in stats.schema.json)."""
        return {
            "mode": self.chosen.mode,
            "threads": self.chosen.threads,
            "chosen_by": self.chosen_by,
            "candidates": [a.label for a in self.arrangements],
            "trials": [t.as_dict() for t in self.figures],
            "rechecks": self.rechecks,
        }


def describe(arrangement: Arrangement) -> str:
    threads = (
        "" if arrangement.threads is None else f", interpreter on {arrangement.threads} thread(s)"
    )
    return f"{arrangement.mode}{threads}"


def execution_for(
    engine: Any, config: PipelineSection, cache: ChoiceCache | None = None
) -> AdaptiveExecution:
    """`pipeline.mode` over the thread counts the engine allows (all of them unless
    `model.threads` pinned one); with a cache, keyed by the model's bytes and runtime."""
    switchable = callable(getattr(engine, "use_threads", None))
    fixed = getattr(engine, "threads_fixed", None)
    arrangements = candidates(config.mode, fixed, usable_cores(), switchable)
    key = ""
    runner = getattr(engine, "runner", None)
    if cache is not None and runner is not None:
        from edgecam.runtime.probe import file_sha256

        resolved = getattr(engine, "resolved", None)
        spec = getattr(resolved, "spec", None)
        verified = bool(getattr(resolved, "verified", False))
        digest = spec.sha256 if verified and spec is not None and spec.sha256 else None
        digest = digest or file_sha256(runner.model_path)
        key = f"{digest}|{runner.runtime}={runner.runtime_version}"
    return AdaptiveExecution(arrangements, key=key, cache=cache, recheck_s=config.recheck_s)
