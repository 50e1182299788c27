"""TFLite runtimes: the interpreter wrapper (the only code importing ai-edge-litert or
tflite-runtime), crash-safe probes in a child process, the `auto` selection and its cache."""

from edgecam.runtime.interpreter import (
    AUTO_ORDER,
    RUNTIMES,
    Runner,
    RuntimeChoice,
    RuntimeName,
    available_runtimes,
)
from edgecam.runtime.open import open_runner

__all__ = [
    "AUTO_ORDER",
    "RUNTIMES",
    "Runner",
    "RuntimeChoice",
    "RuntimeName",
    "available_runtimes",
    "open_runner",
]
