"""`runtime = "auto"`: pick the first TFLite runtime that really runs the model on this machine.

A runtime wheel can be installed and importable yet unusable: ai-edge-litert 2.3.0 aarch64
segfaults while building its interpreter under qemu, and aarch64 binaries built with LSE
atomics die with SIGILL on a Pi 4 (Cortex-A72). A signal cannot be caught in-process, so each
candidate loads the model and invokes it once in a child process (:mod:`edgecam.runtime.probe`); a
crash, a hang or outputs that do not match what the file declares skip that runtime with one
warning. The first working choice is cached in the state directory, keyed by the model's
sha256 and the installed runtime versions, so only the first start pays for the probes.
"""

from __future__ import annotations

import logging
import platform
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

from edgecam.errors import EdgecamError, ModelError, TFLiteRuntimeError
from edgecam.models.modelinfo import inspect_model
from edgecam.runtime.cache import ChoiceCache
from edgecam.runtime.interpreter import (
    AUTO_ORDER,
    INSTALL_HINT,
    RUNTIMES,
    RuntimeName,
    available_runtimes,
)
from edgecam.runtime.probe import ProbeResult, file_sha256, probe_runtime

log = logging.getLogger(__name__)

ProbeStatus = Literal["ok", "crashed", "hang", "error", "wrong-output", "missing"]
SECTION = "choice"  # of the ChoiceCache

Prober = Callable[..., ProbeResult]


@dataclass(frozen=True)
class Attempt:
    """One runtime tried on one model. detail: one line ("crashed with SIGSEGV", ...)."""

    runtime: str
    version: str | None
    status: ProbeStatus
    detail: str
    signal_name: str | None = None
    error_kind: str | None = None
    invoke_ms: float | None = None
    warm_ms: float | None = None
    delegated: int | None = None

    @property
    def package(self) -> str:
        return RUNTIMES[self.runtime][0] if self.runtime in RUNTIMES else self.runtime

    def describe(self) -> str:
        version = f" {self.version}" if self.version else ""
        return f"{self.package}{version}: {self.detail}"


@dataclass(frozen=True)
class Selection:
    """The runtime to use, whether it came from the cache, and what was tried to find it."""

    runtime: RuntimeName
    version: str
    cached: bool
    attempts: tuple[Attempt, ...]


# ---- judging one probe --------------------------------------------------------------------


def expected_outputs(model_path: Path) -> list[tuple[tuple[int, ...], str]]:
    """(shape, dtype) of each output as the flatbuffer declares it; shape () = not declared."""
    return [(t.shape, t.dtype) for t in inspect_model(model_path).outputs]


def judge(result: ProbeResult, expected: Sequence[tuple[tuple[int, ...], str]] | None) -> Attempt:
    """Turn a probe into an Attempt; a clean run whose outputs disagree with the file is
    "wrong-output" (a runtime bug we must not publish numbers from)."""
    base = Attempt(
        result.runtime,
        result.version,
        "ok",
        "",
        invoke_ms=result.invoke_ms,
        warm_ms=result.warm_ms,
        delegated=result.delegated,
    )
    if result.signal_name:
        detail = f"crashed with {result.signal_name}"
        return replace(base, status="crashed", detail=detail, signal_name=result.signal_name)
    if result.timed_out:
        return replace(base, status="hang", detail=f"hung: {result.error}")
    if not result.ok:
        detail = result.error or "failed"
        return replace(base, status="error", detail=detail, error_kind=result.error_kind)
    problem = _output_problem(result.results, expected)
    if problem:
        return replace(base, status="wrong-output", detail=problem)
    ms = f"{result.invoke_ms:.1f} ms first invoke" if result.invoke_ms is not None else "ran"
    return replace(base, detail=f"ok ({ms})")


def _output_problem(
    results: Sequence[Mapping[str, Any]], expected: Sequence[tuple[tuple[int, ...], str]] | None
) -> str | None:
    for i, got in enumerate(results):
        if got.get("nan"):
            return f"output {i} contains NaN after invoking on zeros"
    if expected is None:
        return None
    if len(results) != len(expected):
        return f"returned {len(results)} outputs, the model declares {len(expected)}"
    for i, (got, (shape, dtype)) in enumerate(zip(results, expected, strict=True)):
        got_shape = tuple(int(d) for d in got.get("shape", ()))
        if shape and all(d > 0 for d in shape) and got_shape != shape:
            return f"output {i} has shape {got_shape}, the model declares {shape}"
        if got.get("dtype") != dtype:
            return f"output {i} has dtype {got.get('dtype')}, the model declares {dtype}"
    return None


def probe_runtimes(
    model_path: Path,
    runtimes: Sequence[str],
    *,
    num_threads: int,
    installed: Mapping[str, str] | None = None,
    timeout: float = 60.0,
    runs: int = 1,
    stop_at_first_ok: bool = True,
    prober: Prober = probe_runtime,
) -> list[Attempt]:
    """Probe each of ``runtimes`` in order; a runtime that is not installed is "missing"."""
    have = available_runtimes() if installed is None else dict(installed)
    expected = expected_outputs(model_path)
    attempts: list[Attempt] = []
    for name in runtimes:
        if name not in have:
            attempts.append(Attempt(name, None, "missing", "not installed"))
            continue
        attempt = judge(prober(model_path, name, num_threads, timeout, runs=runs), expected)
        if attempt.version is None:  # crashed before saying: the installed version it is
            attempt = replace(attempt, version=have[name])
        attempts.append(attempt)
        if attempt.status == "ok" and stop_at_first_ok:
            break
    return attempts


# ---- selection with a cache ---------------------------------------------------------------


def cache_key(sha256: str, installed: Mapping[str, str], candidates: Sequence[str]) -> str:
    """Model bytes + exact runtime versions + machine: any change means a new probe."""
    versions = ",".join(f"{n}={installed[n]}" for n in sorted(installed))
    return f"{sha256}|{platform.machine()}|{versions}|{','.join(candidates)}"


def select_runtime(
    model_path: Path,
    *,
    num_threads: int,
    candidates: Sequence[RuntimeName] = AUTO_ORDER,
    state_dir: Path | None = None,
    timeout: float = 60.0,
    prober: Prober = probe_runtime,
) -> Selection:
    """The first of ``candidates`` that loads and runs ``model_path`` here (cached)."""
    installed = {n: v for n, v in available_runtimes().items() if n in candidates}
    if not installed:
        wanted = " or ".join(RUNTIMES[n][0] for n in candidates)
        raise TFLiteRuntimeError(
            f"no TFLite runtime installed: {wanted} is required", hint=INSTALL_HINT
        )
    cache = ChoiceCache(state_dir)
    key = cache_key(file_sha256(model_path), installed, candidates)
    hit = cache.get(SECTION, key)
    if hit and installed.get(hit.get("runtime", "")) == hit.get("version"):
        log.debug("%s: cached runtime choice %s %s", model_path, hit["runtime"], hit["version"])
        return Selection(hit["runtime"], hit["version"], True, _attempts(hit.get("attempts")))
    attempts = probe_runtimes(
        model_path,
        candidates,
        num_threads=num_threads,
        installed=installed,
        timeout=timeout,
        prober=prober,
    )
    chosen = next((a for a in attempts if a.status == "ok"), None)
    for attempt in attempts:
        if attempt is not chosen and attempt.status != "missing":
            log.warning("%s: skipping %s", model_path.name, attempt.describe())
    if chosen is None or chosen.version is None:
        raise no_runtime_error(model_path, attempts, installed)
    selection = Selection(chosen.runtime, chosen.version, False, tuple(attempts))  # type: ignore[arg-type]
    remember(cache, key, model_path, selection)
    return selection


def no_runtime_error(
    model_path: Path, attempts: Sequence[Attempt], installed: Mapping[str, str]
) -> EdgecamError:
    """ModelError when every runtime rejected the file itself, else TFLiteRuntimeError."""
    summary = "; ".join(a.describe() for a in attempts if a.status != "missing")
    if attempts and all(a.error_kind == "ModelError" for a in attempts if a.status != "missing"):
        return ModelError(
            f"{model_path}: no installed runtime can load it ({summary})",
            hint="re-fetch the model and check it with `edgecam models verify`",
        )
    hint = (
        "pip install tflite-runtime 'numpy<2' (the fallback runtime), then retry"
        if "tflite" not in installed
        else "run `edgecam doctor` to see why each runtime fails"
    )
    return TFLiteRuntimeError(
        f"{model_path}: no TFLite runtime works on this machine ({summary})", hint
    )


def _attempts(raw: Any) -> tuple[Attempt, ...]:
    fields = set(Attempt.__dataclass_fields__)
    if not isinstance(raw, list):
        return ()
    return tuple(
        Attempt(**{k: v for k, v in item.items() if k in fields})
        for item in raw
        if isinstance(item, dict) and {"runtime", "version", "status", "detail"} <= item.keys()
    )


def remember(cache: ChoiceCache, key: str, model_path: Path, selection: Selection) -> None:
    """A read-only state dir only costs the probes again at the next start."""
    cache.put(
        SECTION,
        key,
        {
            "runtime": selection.runtime,
            "version": selection.version,
            "model": str(model_path),
            "attempts": [asdict(a) for a in selection.attempts],
        },
    )


def record_choice(
    model_path: Path,
    attempts: Sequence[Attempt],
    *,
    candidates: Sequence[RuntimeName] = AUTO_ORDER,
    state_dir: Path | None = None,
) -> Selection | None:
    """Cache what `edgecam doctor` found (its probes cover every runtime), so the next
    `runtime = "auto"` start needs none. None when no candidate worked."""
    chosen = next(
        (a for name in candidates for a in attempts if a.runtime == name and a.status == "ok"),
        None,
    )
    if chosen is None or chosen.version is None:
        return None
    installed = {n: v for n, v in available_runtimes().items() if n in candidates}
    selection = Selection(chosen.runtime, chosen.version, False, tuple(attempts))  # type: ignore[arg-type]
    key = cache_key(file_sha256(model_path), installed, candidates)
    remember(ChoiceCache(state_dir), key, model_path, selection)
    return selection
