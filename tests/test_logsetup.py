"""Logging on stderr: journald style (`<N>` priority, no timestamp) when stderr is the journal
stream systemd handed over ($JOURNAL_STREAM = device:inode of it), timestamped otherwise;
known secrets are redacted from every line."""

from __future__ import annotations

import io
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from edgecam.logsetup import (
    error_line,
    journal_connected,
    printable,
    register_secret,
    setup_logging,
    syslog_priority,
)
from edgecam.secrets import MASK
from tests.support.paths import REPO


@pytest.fixture(autouse=True)
def _restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


def journal_env(stream: IO[str]) -> dict[str, str]:
    info = os.fstat(stream.fileno())
    return {"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"}


def read(stream: IO[str]) -> str:
    stream.flush()
    stream.seek(0)
    return stream.read()


def test_journald_format_when_stderr_is_the_journal_stream(tmp_path: Path) -> None:
    with (tmp_path / "journal").open("w+") as stream:
        setup_logging("debug", "auto", stream=stream, environ=journal_env(stream))
        log = logging.getLogger("edgecam.test")
        log.debug("d")
        log.info("ready")
        log.warning("w")
        log.error("e")
        log.critical("c")
        assert read(stream).splitlines() == [
            "<7>edgecam.test: d",
            "<6>edgecam.test: ready",
            "<4>edgecam.test: w",
            "<3>edgecam.test: e",
            "<2>edgecam.test: c",
        ]


def test_redirected_stderr_is_not_the_journal(tmp_path: Path) -> None:
    """JOURNAL_STREAM inherited, but stderr now goes to a file: plain lines with timestamps."""
    with (tmp_path / "journal").open("w+") as journal, (tmp_path / "log").open("w+") as other:
        assert journal_connected(journal, journal_env(journal))
        assert not journal_connected(other, journal_env(journal))
        setup_logging("info", "auto", stream=other, environ=journal_env(journal))
        logging.getLogger("edgecam.test").info("hello")
        line = read(other).strip()
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d INFO edgecam\.test: hello", line)


def test_no_journal_stream_means_plain() -> None:
    assert not journal_connected(io.StringIO(), {"JOURNAL_STREAM": "1:2"})
    assert not journal_connected(sys.stderr, {})


def test_traceback_lines_all_carry_the_priority(tmp_path: Path) -> None:
    with (tmp_path / "j").open("w+") as stream:
        setup_logging("info", "journald", stream=stream)
        try:
            raise ValueError("bad frame")
        except ValueError:
            logging.getLogger("edgecam.test").exception("stage failed")
        lines = read(stream).splitlines()
    assert len(lines) > 3
    assert all(line.startswith("<3>") for line in lines)
    assert lines[-1] == "<3>ValueError: bad frame"


def test_level_filters_and_a_second_call_replaces_the_handler() -> None:
    first, second = io.StringIO(), io.StringIO()
    setup_logging("warning", "plain", stream=first)
    setup_logging("debug", "journald", stream=second)
    logging.getLogger("edgecam.test").debug("only in the second")
    assert first.getvalue() == ""
    assert second.getvalue() == "<7>edgecam.test: only in the second\n"
    setup_logging("error", "journald", stream=second)
    logging.getLogger("edgecam.test").warning("filtered out")
    assert "filtered out" not in second.getvalue()


def test_secrets_are_redacted_in_messages_args_and_tracebacks() -> None:
    stream = io.StringIO()
    setup_logging("info", "journald", stream=stream, secrets=["hunter2"])
    log = logging.getLogger("edgecam.test")
    log.info("connecting with password %s", "hunter2")
    register_secret("s3cr3t-from-file")
    log.info("url mqtt://u:s3cr3t-from-file@broker")
    try:
        raise ConnectionError("auth failed for hunter2")
    except ConnectionError:
        log.exception("broker refused")
    text = stream.getvalue()
    assert "hunter2" not in text
    assert "s3cr3t-from-file" not in text
    assert f"connecting with password {MASK}" in text
    assert f"auth failed for {MASK}" in text


def test_custom_levels_map_to_the_nearest_priority() -> None:
    assert syslog_priority(logging.INFO + 5) == 6
    assert syslog_priority(5) == 7
    assert syslog_priority(logging.CRITICAL + 10) == 2


def test_error_lines_for_print_get_the_error_priority_under_the_journal(tmp_path: Path) -> None:
    with (tmp_path / "j").open("w") as stream:
        env = journal_env(stream)
        assert error_line("a\nb", stream=stream, environ=env) == "<3>a\n<3>b"
        assert error_line("a\nb", stream=stream, environ={}) == "a\nb"


def test_unknown_level_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown log level"):
        setup_logging("verbose")


def test_printable_escapes_what_would_drive_a_terminal() -> None:
    assert printable("person") == "person"
    assert printable("Ω 猫 🐈 café") == "Ω 猫 🐈 café"  # printable unicode is kept
    assert printable("a\x1b[2Jb\x07\u202ec\ud800\x00") == "a\\x1b[2Jb\\x07\\u202ec\\ud800\\x00"
    assert printable("one\ntwo\x1b", keep_newlines=True) == "one\ntwo\\x1b"
    assert printable("one\ntwo") == "one\\ntwo"


_NATIVE_SCRIPT = """
import logging, os, sys, threading, time
from edgecam.logsetup import native_stderr_to_log, setup_logging
setup_logging("info", "plain")
log = logging.getLogger("edgecam.test")
inside = threading.Event()
def other_thread():
    inside.wait(10)
    log.warning("from another thread, while native output is captured")
worker = threading.Thread(target=other_thread)
worker.start()
with native_stderr_to_log(log, "native", logging.INFO):
    os.write(2, b"raw noise from C\\n")
    inside.set()
    worker.join(10)
print("done", file=sys.stderr)
"""


def test_native_output_is_logged_and_other_threads_log_lines_are_not_caught() -> None:
    """Captured: what C code writes to fd 2 (logged with a prefix). Not captured: the log
    lines another thread writes meanwhile, which go out at once at their own level."""
    done = subprocess.run(
        [sys.executable, "-c", _NATIVE_SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert [x.split(" ", 2)[2] for x in lines[:2]] == [
        "WARNING edgecam.test: from another thread, while native output is captured",
        "INFO edgecam.test: native: raw noise from C",
    ]
    assert lines[2:] == ["done"]
