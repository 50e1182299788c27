"""One error hierarchy; the CLI maps each class to an exit status in one table.

Every message says what failed, expected vs got, and how to fix it, so the CLI can print
it as one line with no traceback.
"""

from __future__ import annotations

from pathlib import Path

EXIT_OK = 0
EXIT_FAILURE = 1  # something broke while running (camera lost for good, broker auth, crash)
EXIT_USAGE = 2  # the user asked for something impossible: bad flag, config, model, source


class EdgecamError(Exception):
    """Base class: carries a one-line message and an exit status."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(EdgecamError):
    """A bad command-line argument."""

    exit_code = EXIT_USAGE


class ConfigError(EdgecamError):
    """The config file or an override is invalid; message lists every bad field."""

    exit_code = EXIT_USAGE


class ModelError(EdgecamError):
    """Unknown model name, missing/corrupt/mismatched model or label file."""

    exit_code = EXIT_USAGE


class FetchError(EdgecamError):
    """A model download failed (offline, HTTP error, checksum mismatch)."""

    exit_code = EXIT_USAGE


class SourceError(EdgecamError):
    """A frame source cannot be opened (missing file, no camera, bad URL)."""

    exit_code = EXIT_USAGE


class SourceLost(EdgecamError):
    """A source that was working stopped delivering frames (unplugged camera, RTSP drop)."""

    exit_code = EXIT_FAILURE


class TFLiteRuntimeError(EdgecamError):
    """The TFLite runtime is missing, crashed or returned something unexpected."""

    exit_code = EXIT_FAILURE


class SinkError(EdgecamError):
    """An output (MQTT broker, file) refused us in a way retrying cannot fix."""

    exit_code = EXIT_FAILURE


def describe_bug(exc: BaseException) -> str:
    """`TypeError: message (file.py:12 in function)`: an unexpected error in one line that
    still points at where it happened (the traceback goes to the DEBUG log)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = "unknown location"
    if tb is not None:
        code = tb.tb_frame.f_code
        where = f"{Path(code.co_filename).name}:{tb.tb_lineno} in {code.co_name}"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else '(no message)'} ({where})"
