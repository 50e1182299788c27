"""The `execution` line of `edgecam doctor`: what adaptive execution measured on this machine.

`edgecam run` caches, per model, runtime and kind of source, which arrangement of the stages
was fastest here (:mod:`edgecam.pipeline.execution`); the doctor shows those measurements for
the configured model, or says that the first run will measure (a few seconds).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from edgecam.doctor.checks import Check
from edgecam.pipeline.execution import SECTION
from edgecam.runtime.cache import ChoiceCache
from edgecam.runtime.probe import file_sha256

FIX = "pin it with `pipeline.mode` (sequential | pipelined) and `--threads` if you must"


def cached_choices(state_dir: Path, model_path: Path) -> list[dict[str, Any]]:
    """Cached arrangement choices for this model file (every runtime and kind of source)."""
    digest = file_sha256(model_path)
    entries = ChoiceCache(state_dir).entries(SECTION)
    return [e for e in entries.values() if str(e.get("model", "")).startswith(digest)]


def _figures(trials: Sequence[Mapping[str, Any]]) -> str:
    return ", ".join(f"{t.get('arrangement')} {float(t.get('fps', 0)):.1f} fps" for t in trials)


def check_execution(entries: Sequence[Mapping[str, Any]], mode: str, threads: int | None) -> Check:
    """ok with the measured choices; ok too when nothing was measured yet (first run does)."""
    pinned = []
    if mode != "auto":
        pinned.append(f"pipeline.mode = {mode}")
    if threads is not None:
        pinned.append(f"model.threads = {threads}")
    prefix = f"pinned by {' and '.join(pinned)}; " if pinned else ""
    data = {"mode": mode, "threads": threads, "cached": [dict(e) for e in entries]}
    if not entries:
        detail = (
            f"{prefix}nothing measured yet: the first `edgecam run` measures sequential vs "
            "pipelined arrangements on its own frames (a few seconds) and caches the fastest"
        )
        return Check("execution", "ok", detail, None, data)
    parts = [
        f"{e.get('signature', '?')}: {e.get('arrangement', '?')} ({_figures(e.get('trials', []))})"
        for e in entries
    ]
    return Check("execution", "ok", prefix + "measured here: " + "; ".join(parts), FIX, data)
