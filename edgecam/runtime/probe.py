"""Load a model in a throw-away subprocess before trusting a runtime with it.

tflite-runtime 2.14 segfaults (rc -11) on some truncated or corrupted files instead of raising;
a crash there would kill the whole service with no message. The child loads the model,
allocates, invokes once on zeros and prints its I/O as JSON; the parent turns a signal, a
timeout or an error into one-line edgecam errors. Successful probes are cached per
(runtime, version, file sha256) so each file is probed once.

Child side: ``python -m edgecam.runtime.probe MODEL --runtime B --threads N --json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgecam.errors import EdgecamError, ModelError, TFLiteRuntimeError
from edgecam.runtime.cache import ChoiceCache
from edgecam.runtime.interpreter import load_runner, resolve_runtime

log = logging.getLogger(__name__)

CACHE_VERSION = 1
PACKAGE_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class ProbeResult:
    """What a probe child reported. error_kind: the edgecam error class name on failure."""

    ok: bool
    runtime: str
    version: str | None
    signal_name: str | None = None
    error: str | None = None
    error_kind: str | None = None
    invoke_ms: float | None = None
    inputs: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    outputs: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    #: True when the child was killed for overrunning the timeout (a hang, not a crash).
    timed_out: bool = False
    #: What invoke() actually returned: {"shape", "dtype", "nan"} per output, in output order.
    results: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    #: Median of the invokes after the first (``runs`` > 1): the steady-state latency.
    warm_ms: float | None = None
    #: Delegate kernels in the execution plan (XNNPACK is the only default delegate).
    delegated: int | None = None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def probe_runtime(
    model_path: Path, runtime: str, num_threads: int, timeout: float = 60.0, *, runs: int = 1
) -> ProbeResult:
    """Load + allocate + invoke ``model_path`` with ``runtime`` in a child process.

    ``runs`` > 1 invokes that many times in all and reports the median of all but the first.
    """
    cmd = [sys.executable, "-m", "edgecam.runtime.probe", str(model_path), "--runtime", runtime]
    cmd += ["--threads", str(num_threads), "--runs", str(max(1, runs)), "--json"]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PACKAGE_ROOT), env.get("PYTHONPATH")) if p)
    try:
        proc = subprocess.run(
            cmd, check=False, capture_output=True, text=True, timeout=timeout, env=env
        )
    except subprocess.TimeoutExpired:
        return ProbeResult(
            False, runtime, None, error=f"timed out after {timeout:g} s", timed_out=True
        )
    if proc.returncode < 0:
        sig = _signal_name(-proc.returncode)
        return ProbeResult(False, runtime, None, signal_name=sig, error=f"killed by {sig}")
    lines = proc.stdout.strip().splitlines()
    try:
        data = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        tail = " ".join(proc.stderr.strip().splitlines()[-1:]) or f"exit status {proc.returncode}"
        return ProbeResult(False, runtime, None, error=tail)
    return ProbeResult(
        ok=bool(data.get("ok")),
        runtime=runtime,
        version=data.get("version"),
        error=data.get("error"),
        error_kind=data.get("error_kind"),
        invoke_ms=data.get("invoke_ms"),
        inputs=tuple(data.get("inputs", ())),
        outputs=tuple(data.get("outputs", ())),
        results=tuple(data.get("results", ())),
        warm_ms=data.get("warm_ms"),
        delegated=data.get("delegated"),
    )


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def ensure_loadable(
    model_path: Path,
    runtime: str,
    version: str,
    num_threads: int,
    *,
    timeout: float = 60.0,
    state_dir: Path | None = None,
) -> ProbeResult:
    """Probe once per (runtime, version, sha256); raise ModelError/TFLiteRuntimeError on failure.

    Successes are kept in the ``loadable`` section of :class:`ChoiceCache`.
    """
    cache = ChoiceCache(state_dir)
    key = f"{runtime}|{version}|{file_sha256(model_path)}"
    hit = cache.get("loadable", key)
    if hit is not None:
        return ProbeResult(True, runtime, version, outputs=tuple(hit.get("outputs", ())))
    result = probe_runtime(model_path, runtime, num_threads, timeout)
    if result.ok:
        cache.put("loadable", key, {"model": str(model_path), "outputs": list(result.outputs)})
        return result
    raise _probe_error(model_path, runtime, timeout, result)


def _probe_error(model_path: Path, runtime: str, timeout: float, r: ProbeResult) -> EdgecamError:
    if r.signal_name:
        return ModelError(
            f"{model_path}: the tflite interpreter crashed with {r.signal_name} while loading it "
            f"— the file is corrupt or not a TFLite model",
            hint="fetch the model again and verify its sha256",
        )
    if r.error_kind == "TFLiteRuntimeError" or (r.error or "").startswith("timed out"):
        return TFLiteRuntimeError(f"{model_path}: probing it with {runtime} failed: {r.error}")
    return ModelError(r.error or f"{model_path}: {runtime} cannot load it")


def _child(model: str, runtime: str, threads: int, runs: int = 1) -> dict[str, Any]:
    """Runs in the probe subprocess: load, allocate, invoke on zeros ``runs`` times."""
    import numpy as np

    try:
        name, version = resolve_runtime(runtime)  # type: ignore[arg-type]
        runner = load_runner(Path(model), name, version, threads)
        view = runner.input_view()
        view[...] = np.zeros_like(view)
        del view
        start = time.perf_counter()
        arrays = runner.invoke()
        invoke_ms = (time.perf_counter() - start) * 1000.0
        warm = [_timed_invoke(runner) for _ in range(runs - 1)]
    except EdgecamError as exc:
        return {"ok": False, "error": str(exc), "error_kind": type(exc).__name__}
    describe = [
        [{"name": t.name, "shape": list(t.shape), "dtype": t.dtype.name} for t in group]
        for group in (runner.inputs, runner.outputs)
    ]
    results = [
        {"shape": list(a.shape), "dtype": a.dtype.name, "nan": bool(_has_nan(a))} for a in arrays
    ]
    return {
        "ok": True,
        "runtime": runner.runtime,
        "version": runner.runtime_version,
        "invoke_ms": round(invoke_ms, 3),
        "warm_ms": round(statistics.median(warm), 3) if warm else None,
        "delegated": _delegate_nodes(runner),
        "inputs": describe[0],
        "outputs": describe[1],
        "results": results,
    }


def _timed_invoke(runner: Any) -> float:
    start = time.perf_counter()
    runner.invoke()
    return (time.perf_counter() - start) * 1000.0


def _has_nan(array: Any) -> bool:
    import numpy as np

    return bool(np.issubdtype(array.dtype, np.floating) and np.isnan(array).any())


def _delegate_nodes(runner: Any) -> int | None:
    """DELEGATE nodes in the interpreter's plan; None if the runtime does not say.

    Both runtimes list replaced ops plus one DELEGATE node per delegated partition, so 0 means
    no op of this model runs in XNNPACK (tflite-runtime 2.14 int8 models, for instance).
    """
    details = getattr(runner._interp, "_get_ops_details", None)
    if details is None:
        return None
    try:
        return sum(1 for op in details() if op.get("op_name") == "DELEGATE")
    except (AttributeError, KeyError, TypeError):  # a private API changed in another version
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgecam.runtime.probe", description=__doc__)
    parser.add_argument("model")
    parser.add_argument("--runtime", default="auto", choices=["auto", "litert", "tflite"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=1, help="invokes; >1 also reports warm_ms")
    parser.add_argument("--json", action="store_true", help="machine-readable output (default)")
    args = parser.parse_args(argv)
    report = _child(args.model, args.runtime, args.threads, max(1, args.runs))
    # Machine interface for the parent process: one JSON line on stdout.
    sys.stdout.write(json.dumps(report) + "\n")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
