"""TFLite interpreter wrapper: the only module that imports ai-edge-litert or tflite-runtime.

Two interchangeable back-ends with the same Python API: ai-edge-litert (XNNPACK for float and
int8, numpy 2 OK) and tflite-runtime (the only one with armv7l wheels; int8 without XNNPACK on
x86). One :class:`Runner` per model for the life of the process; the input tensor is exposed as
a writable view so preprocessing writes into the interpreter's buffer without a copy.

tflite-runtime does not verify the flatbuffer and segfaults on some corrupt files, so an
untrusted model (no verified sha256) is first loaded in a subprocess (:mod:`edgecam.probe`).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import importlib.util
import logging
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import numpy.typing as npt

from edgecam.errors import BackendError, ModelError

log = logging.getLogger(__name__)

Backend = Literal["auto", "litert", "tflite"]
BackendName = Literal["litert", "tflite"]

#: backend → (pip distribution, importable module with the Interpreter class)
BACKENDS: dict[str, tuple[str, str]] = {
    "litert": ("ai-edge-litert", "ai_edge_litert.interpreter"),
    "tflite": ("tflite-runtime", "tflite_runtime.interpreter"),
}
#: Preference order for "auto": litert is faster on x86/aarch64 and verifies the flatbuffer.
AUTO_ORDER: tuple[BackendName, ...] = ("litert", "tflite")
#: Back-ends that crash (instead of raising) on a malformed file, so untrusted files are probed.
UNVERIFIED_BACKENDS = frozenset({"tflite"})
INSTALL_HINT = "pip install ai-edge-litert (x86_64/aarch64) or pip install tflite-runtime 'numpy<2'"


@dataclass(frozen=True)
class TensorInfo:
    """One model input/output. scale 0.0 means not quantized (float or int tensor)."""

    name: str
    index: int
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    scale: float
    zero_point: int

    @property
    def quantized(self) -> bool:
        return self.scale != 0.0

    @classmethod
    def from_details(cls, d: dict[str, Any]) -> TensorInfo:
        scale, zero_point = d.get("quantization", (0.0, 0))
        return cls(
            name=str(d["name"]),
            index=int(d["index"]),
            shape=tuple(int(x) for x in d["shape"]),
            dtype=np.dtype(d["dtype"]),
            scale=float(scale),
            zero_point=int(zero_point),
        )


def available_backends() -> dict[str, str]:
    """Installed back-ends → distribution version, found without importing them.

    Importing tflite-runtime under numpy 2 fails; that is reported when it is actually used.
    """
    found: dict[str, str] = {}
    for name, (dist, module) in BACKENDS.items():
        if importlib.util.find_spec(module.split(".")[0]) is None:
            continue
        try:
            found[name] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "unknown"
    return found


def resolve_backend(backend: Backend) -> tuple[BackendName, str]:
    """(backend, version) to use for a request; BackendError naming both packages if none."""
    installed = available_backends()
    if backend not in get_args(Backend):
        raise BackendError(
            f"unknown backend {backend!r}: expected one of auto, litert, tflite",
            hint=INSTALL_HINT,
        )
    candidates = AUTO_ORDER if backend == "auto" else (backend,)
    for name in candidates:
        if name in installed:
            return name, installed[name]
    wanted = " or ".join(BACKENDS[n][0] for n in candidates)
    raise BackendError(f"no TFLite runtime installed: {wanted} is required", hint=INSTALL_HINT)


def _interpreter_class(backend: BackendName) -> Any:
    dist, module = BACKENDS[backend]
    try:
        return importlib.import_module(module).Interpreter
    except (ImportError, SystemError, AttributeError) as exc:
        # tflite-runtime under numpy 2 fails here ("compiled using NumPy 1.x").
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BackendError(
            f"cannot import {dist} ({module}): {msg}",
            hint="tflite-runtime needs numpy<2; or install ai-edge-litert",
        ) from exc


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


class Runner:
    """One loaded interpreter. Not thread-safe: use it from one (inference) thread."""

    def __init__(self, interpreter: Any, backend: str, version: str, model_path: Path) -> None:
        self._interp = interpreter
        self.backend = backend
        self.backend_version = version
        self.model_path = model_path
        self.inputs = tuple(TensorInfo.from_details(d) for d in interpreter.get_input_details())
        self.outputs = tuple(TensorInfo.from_details(d) for d in interpreter.get_output_details())
        self.last_invoke_ms = 0.0

    def __repr__(self) -> str:
        return f"Runner({self.model_path.name!r}, {self.backend} {self.backend_version})"

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
            raise BackendError(
                f"{self.model_path}: {self.backend} invoke failed: {_one_line(exc)}",
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
            raise BackendError(
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


@contextlib.contextmanager
def _native_stderr_to_log() -> Iterator[None]:
    """Route what the C++ runtime prints on fd 2 while loading into our log.

    TFLite prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." straight to the
    process's stderr; a CLI whose errors are one line, and journald, should not get that noise.
    Only used around model loading, before any pipeline thread exists.
    """
    try:
        saved = os.dup(2)
    except OSError:  # no usable fd 2 (daemonised without stderr): nothing to redirect
        yield
        return
    with tempfile.TemporaryFile() as capture:
        sys.stderr.flush()
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture.read().decode("utf-8", "replace").splitlines():
                if line.strip():
                    log.log(
                        logging.DEBUG if line.startswith("INFO") else logging.WARNING,
                        "runtime: %s",
                        line,
                    )


def open_runner(
    model_path: Path | str,
    *,
    backend: Backend = "auto",
    num_threads: int | None = None,
    trusted: bool = False,
    preserve_all_tensors: bool = False,
    probe_timeout: float = 60.0,
    state_dir: Path | None = None,
) -> Runner:
    """Load a model and allocate its tensors; errors name the file and say what to do.

    ``trusted``: the caller verified the file's sha256, so the crash-safe subprocess probe is
    skipped. ``state_dir``: where ``backend="auto"`` caches its choice (default
    :func:`edgecam.dirs.state_dir`). ``num_threads`` defaults to the CPU count. XNNPACK: both
    back-ends apply it by default (op resolver AUTO); tflite-runtime 2.14 only uses it for
    float kernels.
    """
    path = Path(model_path)
    if not path.is_file():
        raise ModelError(f"{path}: model file not found", hint="check the path or fetch the model")
    threads = num_threads if num_threads is not None else (os.cpu_count() or 1)
    if threads < 1:
        raise BackendError(f"num_threads must be >= 1, got {threads}")
    probed = False
    if backend == "auto":
        # An installed runtime can still die on this CPU (SIGILL, SIGSEGV: not catchable
        # here), so "auto" tries each in a child process, once per model + runtime versions.
        from edgecam.backend_select import select_backend

        choice = select_backend(
            path, num_threads=threads, timeout=probe_timeout, state_dir=state_dir
        )
        name, version, probed = choice.backend, choice.version, True
    else:
        name, version = resolve_backend(backend)
    if not trusted and not probed and name in UNVERIFIED_BACKENDS:
        from edgecam.probe import ensure_loadable

        ensure_loadable(path, name, version, threads, timeout=probe_timeout)
    interpreter_cls = _interpreter_class(name)
    try:
        with warnings.catch_warnings(), _native_stderr_to_log():
            # litert warns that preserve_all_tensors is for debugging: that is why it is asked.
            warnings.filterwarnings(
                "ignore", message=".*preserve_all_tensors", category=UserWarning
            )
            interp = interpreter_cls(
                model_path=str(path),
                num_threads=threads,
                experimental_preserve_all_tensors=preserve_all_tensors,
            )
            interp.allocate_tensors()
            # XNNPACK is applied lazily at the first invoke; doing it here keeps its log line
            # in our log and the first frame's timing honest.
            for detail in interp.get_input_details():
                interp.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
            interp.invoke()
    except Exception as exc:  # the runtimes raise ValueError, RuntimeError, UnicodeDecodeError...
        raise ModelError(
            f"{path}: {BACKENDS[name][0]} {version} cannot load it: {_one_line(exc)}",
            hint="the file is corrupt, not a TFLite model, or uses ops this runtime lacks",
        ) from exc
    runner = Runner(interp, name, version, path)
    if not runner.inputs or not runner.outputs:
        raise ModelError(f"{path}: model has no inputs or no outputs")
    log.debug("loaded %s with %s %s, %d threads", path, name, version, threads)
    return runner
