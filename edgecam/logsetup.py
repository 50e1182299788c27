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

import contextlib
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
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


def printable(text: str, *, keep_newlines: bool = False) -> str:
    """`text` safe to write to a terminal or the journal: every character that is not
    printable (control characters such as ESC, bidi overrides, lone surrogates) becomes its
    Python escape (`\\x1b`, `\\u202e`), so foreign text can neither drive the terminal nor
    make a UTF-8 stream raise. Newlines are kept only when asked (multi-line error lists)."""
    if text.isprintable():
        return text
    if keep_newlines:
        return "\n".join(printable(line) for line in text.split("\n"))
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text
    )


def error_line(
    text: str, *, stream: IO[str] | None = None, environ: Mapping[str, str] | None = None
) -> str:
    """`text` for a plain print() to stderr (non-printable characters escaped), each line
    marked `<3>` (error) under the journal."""
    text = printable(text, keep_newlines=True)
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


_fd2_lock = threading.Lock()  # fd 2 is one per process: one redirection at a time
_NATIVE_LOG_LIMIT = 64 * 1024  # bytes of captured native output turned into log lines


@contextlib.contextmanager
def native_stderr_to_log(
    logger: logging.Logger, prefix: str, level: int | Callable[[str], int] = logging.DEBUG
) -> Iterator[None]:
    """Route what native code (TFLite, OpenCV, FFmpeg, libjpeg) prints on fd 2 into `logger`.

    Those libraries write straight to the process's stderr ("INFO: Created TensorFlow Lite
    XNNPACK delegate", "[mov,mp4 @ 0x...] moov atom not found", "Corrupt JPEG data"); a CLI
    whose errors are one line, and journald, should not get that noise ahead of edgecam's own
    message. Each captured line is logged as `prefix: line` at `level` (or `level(line)`).

    Only native writes are captured: while fd 2 points at the capture file, Python's
    `sys.stderr` (when it is fd 2) is swapped for a stream on the original destination, so
    log lines other threads write meanwhile (edgecam's handler reads `sys.stderr` at each
    record) go out at once, at their own level. Redirections from several threads take turns.
    """
    with _fd2_lock:
        try:
            saved = os.dup(2)
        except OSError:  # no usable fd 2 (daemonised without stderr): nothing to redirect
            yield
            return
        previous = sys.stderr
        bypass = _stream_on(saved, previous)
        import tempfile  # (shutil, bz2, lzma behind it) only where native code runs

        with tempfile.TemporaryFile() as capture:
            previous.flush()
            os.dup2(capture.fileno(), 2)
            if bypass is not None:
                sys.stderr = bypass
            try:
                yield
            finally:
                if bypass is not None:
                    bypass.flush()
                    if sys.stderr is bypass:
                        sys.stderr = previous
                    bypass.close()
                os.dup2(saved, 2)
                os.close(saved)
                capture.seek(0)
                text = capture.read(_NATIVE_LOG_LIMIT).decode("utf-8", "replace")
                for line in text.splitlines():
                    if line.strip():
                        levelno = level(line) if callable(level) else level
                        logger.log(levelno, "%s: %s", prefix, printable(line))


def _stream_on(fd: int, like: IO[str]) -> IO[str] | None:
    """A text stream on a copy of `fd` encoded like `like`, if `like` writes to fd 2 (else
    Python's writes never reach fd 2 and need no bypass: pytest's capture, a StringIO)."""
    try:
        if like.fileno() != 2:
            return None
    except (OSError, ValueError, AttributeError):
        return None
    encoding = str(getattr(like, "encoding", None) or "utf-8")
    return os.fdopen(os.dup(fd), "w", buffering=1, encoding=encoding, errors="backslashreplace")


def register_secret(secret: str) -> None:
    """Redact `secret` from every later log line (e.g. a password read from a file)."""
    with _installed_lock:
        handlers = list(_installed)
    for handler in handlers:
        for flt in handler.filters:
            if isinstance(flt, RedactingFilter):
                flt.add(secret)
