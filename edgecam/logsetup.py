"""Logging to stderr in a form that suits both a terminal and the systemd journal.

Under systemd, stderr is a stream into journald, which stamps each line with its own time
and reads the priority from a `<N>` prefix (sd-daemon(3)); so there we print no timestamp and
prefix every line with its syslog priority. systemd sets `$JOURNAL_STREAM` to the
`device:inode` of that stream; comparing it with stderr's own tells us stderr was not
redirected elsewhere since. On a terminal the lines carry a timestamp instead.

A redaction filter replaces known secrets (MQTT password, URL passwords) in every record, so a
library that logs a connection string cannot leak them.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Iterable, Mapping
from typing import IO, Literal

from edgecam.secrets import MASK

LogFormat = Literal["auto", "journald", "plain"]

#: logging level -> syslog priority (what journald's `<N>` prefix carries).
SYSLOG_PRIORITY = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}


def syslog_priority(levelno: int) -> int:
    """Nearest syslog priority for any logging level (custom levels included)."""
    for level in sorted(SYSLOG_PRIORITY, reverse=True):
        if levelno >= level:
            return SYSLOG_PRIORITY[level]
    return 7


class JournaldFormatter(logging.Formatter):
    """`<N>logger: message`, every line of a multi-line record (tracebacks) prefixed."""

    def __init__(self) -> None:
        super().__init__("%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{syslog_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in super().format(record).splitlines())


class PlainFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S")


class RedactingFilter(logging.Filter):
    """Replaces registered secret strings in the formatted message and exception text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._secrets: frozenset[str] = frozenset(s for s in secrets if s)

    def add(self, secret: str) -> None:
        if secret:
            with self._lock:
                self._secrets = self._secrets | {secret}

    def _redact(self, text: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):  # longest first
            text = text.replace(secret, MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        message = record.getMessage()
        clean = self._redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._redact(record.exc_text)
        return True


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is at emit time (tests and daemons swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


_installed_lock = threading.Lock()
_installed: list[logging.Handler] = []  # handlers setup_logging added, replaced on each call


def journal_connected(stream: IO[str], environ: Mapping[str, str] | None = None) -> bool:
    """True when `stream` is the journal stream systemd handed us ($JOURNAL_STREAM)."""
    expected = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    if not expected:
        return False
    try:
        info = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):  # closed, or not a real file (pytest capture)
        return False
    return expected == f"{info.st_dev}:{info.st_ino}"


def error_line(
    text: str, *, stream: IO[str] | None = None, environ: Mapping[str, str] | None = None
) -> str:
    """`text` for a plain print() to stderr, each line marked `<3>` (error) under the journal."""
    if not journal_connected(stream or sys.stderr, environ):
        return text
    return "\n".join(f"<3>{line}" for line in text.splitlines())


def setup_logging(
    level: str | int = "warning",
    fmt: LogFormat = "auto",
    *,
    stream: IO[str] | None = None,
    environ: Mapping[str, str] | None = None,
    secrets: Iterable[str] = (),
) -> logging.Handler:
    """(Re)configure the root logger: one stderr handler, journald or plain, with redaction.

    Calling it again (e.g. once the config is loaded) replaces the handler it added before and
    leaves other handlers (pytest's capture) alone.
    """
    numeric = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}: use debug, info, warning or error")
    handler: logging.Handler = _StderrHandler() if stream is None else logging.StreamHandler(stream)
    journald = fmt == "journald" or (
        fmt == "auto" and journal_connected(stream or sys.stderr, environ)
    )
    handler.setFormatter(JournaldFormatter() if journald else PlainFormatter())
    handler.addFilter(RedactingFilter(secrets))
    root = logging.getLogger()
    with _installed_lock:
        for old in _installed:
            root.removeHandler(old)
            old.close()
        _installed[:] = [handler]
        root.addHandler(handler)
    root.setLevel(numeric)
    return handler


def register_secret(secret: str) -> None:
    """Redact `secret` from every later log line (e.g. a password read from a file)."""
    with _installed_lock:
        handlers = list(_installed)
    for handler in handlers:
        for flt in handler.filters:
            if isinstance(flt, RedactingFilter):
                flt.add(secret)
