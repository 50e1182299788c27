"""`open_runner`: the one place that decides how a model file meets a TFLite runtime.

Policy, in order: ``runtime = "auto"`` probes each installed runtime in a child process (an
installed runtime can still die on this CPU with SIGILL or SIGSEGV, which no ``try`` catches)
and uses the first that works, cached per model and runtime versions; a named runtime is used
as asked, but a file whose sha256 nobody verified is first loaded by tflite-runtime in a child
process, because tflite-runtime segfaults on some corrupt files instead of raising.
"""

from __future__ import annotations

import os
from pathlib import Path

from edgecam.errors import ModelError, TFLiteRuntimeError
from edgecam.runtime.interpreter import (
    UNVERIFIED_RUNTIMES,
    Runner,
    RuntimeChoice,
    load_runner,
    resolve_runtime,
)
from edgecam.runtime.select import select_runtime


def open_runner(
    model_path: Path | str,
    *,
    runtime: RuntimeChoice = "auto",
    num_threads: int | None = None,
    trusted: bool = False,
    preserve_all_tensors: bool = False,
    probe_timeout: float = 60.0,
    state_dir: Path | None = None,
) -> Runner:
    """Load a model and allocate its tensors; errors name the file and say what to do.

    ``trusted``: the caller verified the file's sha256, so the crash-safe subprocess probe is
    skipped. ``state_dir``: where probe results are cached (default
    :func:`edgecam.dirs.state_dir`). ``num_threads`` defaults to the CPU count.
    """
    path = Path(model_path)
    if not path.is_file():
        raise ModelError(f"{path}: model file not found", hint="check the path or fetch the model")
    threads = num_threads if num_threads is not None else (os.cpu_count() or 1)
    if threads < 1:
        raise TFLiteRuntimeError(f"num_threads must be >= 1, got {threads}")
    if runtime == "auto":
        choice = select_runtime(
            path, num_threads=threads, timeout=probe_timeout, state_dir=state_dir
        )
        name, version = choice.runtime, choice.version
    else:
        name, version = resolve_runtime(runtime)
        if not trusted and name in UNVERIFIED_RUNTIMES:
            from edgecam.runtime.probe import ensure_loadable  # (subprocess) only when needed

            ensure_loadable(
                path, name, version, threads, timeout=probe_timeout, state_dir=state_dir
            )
    return load_runner(path, name, version, threads, preserve_all_tensors=preserve_all_tensors)
