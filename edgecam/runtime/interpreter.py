"""TFLite interpreter wrapper: the only module that imports ai-edge-litert or tflite-runtime.

Two interchangeable runtimes with the same Python API: ai-edge-litert (XNNPACK for float and
int8, numpy 2 OK) and tflite-runtime (the only one with armv7l wheels; int8 without XNNPACK on
x86). One :class:`Runner` per model for the life of the process; the input tensor is exposed as
a writable view so preprocessing writes into the interpreter's buffer without a copy.

tflite-runtime does not verify the flatbuffer and segfaults on some corrupt files, so an
untrusted model (no verified sha256) is first loaded in a subprocess (:mod:`edgecam.runtime.probe`).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import logging
import time
import warnings
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import numpy.typing as npt

from edgecam.errors import ModelError, TFLiteRuntimeError
from edgecam.logsetup import native_stderr_to_log
from edgecam.types import TensorInfo

log = logging.getLogger(__name__)

RuntimeChoice = Literal["auto", "litert", "tflite"]
RuntimeName = Literal["litert", "tflite"]

#: runtime → (pip distribution, importable module with the Interpreter class)
RUNTIMES: dict[str, tuple[str, str]] = {
    "litert": ("ai-edge-litert", "ai_edge_litert.interpreter"),
    "tflite": ("tflite-runtime", "tflite_runtime.interpreter"),
}
#: Preference order for "auto": litert is faster on x86/aarch64 and verifies the flatbuffer.
AUTO_ORDER: tuple[RuntimeName, ...] = ("litert", "tflite")
#: Runtimes that crash (instead of raising) on a malformed file, so untrusted files are probed.
UNVERIFIED_RUNTIMES = frozenset({"tflite"})
INSTALL_HINT = "pip install ai-edge-litert (x86_64/aarch64) or pip install tflite-runtime 'numpy<2'"


def available_runtimes() -> dict[str, str]:
    """Installed runtimes → distribution version, found without importing them.

    Importing tflite-runtime under numpy 2 fails; that is reported when it is actually used.
    """
    found: dict[str, str] = {}
    for name, (dist, module) in RUNTIMES.items():
        if importlib.util.find_spec(module.split(".")[0]) is None:
            continue
        try:
            found[name] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "unknown"
    return found


def resolve_runtime(runtime: RuntimeChoice) -> tuple[RuntimeName, str]:
    """(runtime, version) to use for a request; TFLiteRuntimeError naming both packages if none."""
    installed = available_runtimes()
    if runtime not in get_args(RuntimeChoice):
        raise TFLiteRuntimeError(
            f"unknown runtime {runtime!r}: expected one of auto, litert, tflite",
            hint=INSTALL_HINT,
        )
    candidates = AUTO_ORDER if runtime == "auto" else (runtime,)
    for name in candidates:
        if name in installed:
            return name, installed[name]
    wanted = " or ".join(RUNTIMES[n][0] for n in candidates)
    raise TFLiteRuntimeError(
        f"no TFLite runtime installed: {wanted} is required", hint=INSTALL_HINT
    )


def _interpreter_class(runtime: RuntimeName) -> Any:
    dist, module = RUNTIMES[runtime]
    try:
        return importlib.import_module(module).Interpreter
    except (ImportError, SystemError, AttributeError) as exc:
        # tflite-runtime under numpy 2 fails here ("compiled using NumPy 1.x").
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TFLiteRuntimeError(
            f"cannot import {dist} ({module}): {msg}",
            hint="tflite-runtime needs numpy<2; or install ai-edge-litert",
        ) from exc


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


class Runner:
    """One loaded interpreter. Not thread-safe: use it from one (inference) thread."""

    def __init__(
        self,
        interpreter: Any,
        runtime: str,
        version: str,
        model_path: Path,
        num_threads: int | None = None,
    ) -> None:
        self._interp = interpreter
        self.runtime = runtime
        self.runtime_version = version
        self.model_path = model_path
        self.num_threads = num_threads
        self.inputs = tuple(TensorInfo.from_details(d) for d in interpreter.get_input_details())
        self.outputs = tuple(TensorInfo.from_details(d) for d in interpreter.get_output_details())
        self.last_invoke_ms = 0.0

    def __repr__(self) -> str:
        return f"Runner({self.model_path.name!r}, {self.runtime} {self.runtime_version})"

    def close(self) -> None:
        """Drop the interpreter (its arena and packed weights) before another is loaded, so
        two never sit in memory together; the runner is unusable afterwards."""
        self._interp = None

    def input_view(self) -> npt.NDArray[Any]:
        """Writable view of input 0's buffer (batch dim kept), e.g. (1, H, W, 3).

        Write into it, then drop every reference before :meth:`invoke`: the interpreter
        refuses to run while a view of its memory is alive.
        """
        view: npt.NDArray[Any] = self._interp.tensor(self.inputs[0].index)()
        return view

    def invoke(self) -> list[npt.NDArray[Any]]:
        """Run once on the current input; raw outputs (copies) in ``self.outputs`` order."""
        start = time.perf_counter()
        try:
            self._interp.invoke()
        except (RuntimeError, ValueError) as exc:
            raise TFLiteRuntimeError(
                f"{self.model_path}: {self.runtime} invoke failed: {_one_line(exc)}",
                hint="drop references to input_view() before invoke()"
                if "reference" in str(exc)
                else None,
            ) from exc
        self.last_invoke_ms = (time.perf_counter() - start) * 1000.0
        return [self._interp.get_tensor(o.index) for o in self.outputs]

    def run(self, tensor: npt.NDArray[Any]) -> list[npt.NDArray[Any]]:
        """Copy ``tensor`` into input 0 and invoke (for callers that already built a tensor)."""
        info = self.inputs[0]
        if tuple(tensor.shape) != info.shape or tensor.dtype != info.dtype:
            raise TFLiteRuntimeError(
                f"{self.model_path.name}: input {info.name!r} expects {info.shape} {info.dtype}, "
                f"got {tuple(tensor.shape)} {tensor.dtype}"
            )
        self._interp.set_tensor(info.index, tensor)
        return self.invoke()

    def read_tensor(self, name: str) -> tuple[TensorInfo, npt.NDArray[Any]]:
        """An intermediate tensor by name (copy); needs ``preserve_all_tensors=True``.

        For tools and tests that compare a model's internals with edgecam's own decoding.
        """
        for d in self._interp.get_tensor_details():
            if d["name"] == name:
                return TensorInfo.from_details(d), self._interp.get_tensor(d["index"])
        raise KeyError(f"{self.model_path.name} has no tensor named {name!r}")


def _runtime_line_level(line: str) -> int:
    """The runtimes' INFO chatter goes to DEBUG; anything else they print is a warning."""
    return logging.DEBUG if line.startswith("INFO") else logging.WARNING


def load_runner(
    path: Path,
    runtime: RuntimeName,
    version: str,
    num_threads: int,
    *,
    preserve_all_tensors: bool = False,
) -> Runner:
    """Load ``path`` with exactly this runtime, allocate and invoke once; no policy, no probe.

    Callers decide which runtime is safe (:func:`edgecam.runtime.open.open_runner`); a file
    tflite-runtime has not seen before can crash this process here. XNNPACK: both runtimes
    apply it by default (op resolver AUTO); tflite-runtime 2.14 only uses it for float kernels.
    """
    if num_threads < 1:
        raise TFLiteRuntimeError(f"num_threads must be >= 1, got {num_threads}")
    interpreter_cls = _interpreter_class(runtime)
    try:
        with (
            warnings.catch_warnings(),
            native_stderr_to_log(log, "runtime", _runtime_line_level),
        ):
            # litert warns that preserve_all_tensors is for debugging: that is why it is asked.
            warnings.filterwarnings(
                "ignore", message=".*preserve_all_tensors", category=UserWarning
            )
            interp = interpreter_cls(
                model_path=str(path),
                num_threads=num_threads,
                experimental_preserve_all_tensors=preserve_all_tensors,
            )
            interp.allocate_tensors()
            # XNNPACK is applied lazily at the first invoke; doing it here keeps its log line
            # in our log and the first frame's timing honest.
            for detail in interp.get_input_details():
                interp.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
            interp.invoke()
    # What both runtimes raise for a file they cannot use (bad flatbuffer, unknown op, failed
    # allocation; UnicodeDecodeError is a ValueError). Anything else is not the file's fault
    # and surfaces as itself instead of "the file is corrupt".
    except (ValueError, RuntimeError) as exc:
        raise ModelError(
            f"{path}: {RUNTIMES[runtime][0]} {version} cannot load it: {_one_line(exc)}",
            hint="the file is corrupt, not a TFLite model, or uses ops this runtime lacks",
        ) from exc
    runner = Runner(interp, runtime, version, path, num_threads)
    if not runner.inputs or not runner.outputs:
        raise ModelError(f"{path}: model has no inputs or no outputs")
    log.debug("loaded %s with %s %s, %d threads", path, runtime, version, num_threads)
    return runner
