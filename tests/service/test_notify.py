"""sd_notify protocol against a real AF_UNIX datagram socket, as systemd would listen.

The service manager binds a SOCK_DGRAM socket and exports its path as $NOTIFY_SOCKET (a
leading '@' names Linux's abstract namespace). Each notification is one datagram of
newline-separated KEY=VALUE assignments: READY=1, WATCHDOG=1, STOPPING=1, STATUS=text.
$WATCHDOG_USEC (and $WATCHDOG_PID) announce the watchdog; pings are due at half of it.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgecam.service.notify import Notifier


class FakeClock:
    """Time is an argument: the rate limit is checked without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify.sock")
    sock.bind(path)
    sock.settimeout(5)
    yield sock, path
    sock.close()


def received(sock: socket.socket) -> list[list[str]]:
    """Every datagram waiting on the socket, each split into its assignments."""
    out = []
    sock.setblocking(False)
    try:
        while True:
            out.append(sock.recv(4096).decode().split("\n"))
    except BlockingIOError:
        pass
    finally:
        sock.settimeout(5)
    return out


def test_ready_status_stopping_arrive_as_datagrams(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    notifier = Notifier({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    assert notifier.ready("fps 10.0")
    assert sock.recv(4096).decode().split("\n") == ["READY=1", "STATUS=fps 10.0"]
    assert notifier.status("fps 9.8 | mqtt connected")
    assert sock.recv(4096) == b"STATUS=fps 9.8 | mqtt connected"
    assert notifier.stopping()
    assert sock.recv(4096) == b"STOPPING=1"
    notifier.close()


def test_status_is_one_line_and_not_resent_when_unchanged(
    listener: tuple[socket.socket, str],
) -> None:
    sock, path = listener
    notifier = Notifier({"NOTIFY_SOCKET": path})
    assert notifier.status("fps 1.0\nlast: person")  # a newline would start a new assignment
    assert not notifier.status("fps 1.0 last: person")
    assert received(sock) == [["STATUS=fps 1.0 last: person"]]


def test_abstract_namespace_socket() -> None:
    name = f"edgecam-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5)
    try:
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name})
        assert notifier.ready()
        assert sock.recv(4096) == b"READY=1"
    finally:
        sock.close()


def test_without_notify_socket_everything_is_a_no_op() -> None:
    notifier = Notifier({"WATCHDOG_USEC": "1000000"})
    assert not notifier.enabled
    assert not notifier.watchdog_enabled
    assert not notifier.ready()
    assert not notifier.watchdog()
    assert not notifier.stopping()


def test_watchdog_interval_is_half_of_watchdog_usec(listener: tuple[socket.socket, str]) -> None:
    _, path = listener
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "30000000"})
    assert notifier.watchdog_interval_s == 15.0
    assert notifier.watchdog_enabled


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        # no WatchdogSec= in the unit: no pings wanted
        ({}, None),
        # the watchdog belongs to this process
        ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}, 1.0),
        # inherited by a child process (e.g. a runtime probe): not ours to feed
        ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}, None),
        # garbage or zero: ignored rather than crashing the service
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
    ],
)
def test_watchdog_environment(
    listener: tuple[socket.socket, str], env: dict[str, str], expected: float | None
) -> None:
    _, path = listener
    assert Notifier({"NOTIFY_SOCKET": path, **env}).watchdog_interval_s == expected


def test_watchdog_pings_are_rate_limited(listener: tuple[socket.socket, str]) -> None:
    """Progress may arrive many times a second; pings go out every quarter of WatchdogSec."""
    sock, path = listener
    clock = FakeClock()
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "4000000"}, clock=clock)
    assert notifier.watchdog_interval_s == 2.0
    sent = []
    for _ in range(40):  # 4 s of progress every 0.1 s
        sent.append(notifier.watchdog())
        clock.now += 0.1
    assert sum(sent) == 4  # at 0, 1, 2, 3 s: never more than 1 s (WatchdogSec / 4) apart
    assert received(sock) == [["WATCHDOG=1"]] * 4


def test_watchdog_disabled_sends_nothing(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    notifier = Notifier({"NOTIFY_SOCKET": path})
    assert not notifier.watchdog()
    assert received(sock) == []


def test_vanished_socket_fails_softly_and_logs_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    with caplog.at_level(logging.WARNING, logger="edgecam.service.notify"):
        assert not notifier.ready()
        assert not notifier.status("x")
    warnings = [r for r in caplog.records if "sd_notify" in r.getMessage()]
    assert len(warnings) == 1
    assert "gone.sock" in warnings[0].getMessage()


def test_non_unix_notify_socket_is_ignored(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="edgecam.service.notify"):
        notifier = Notifier({"NOTIFY_SOCKET": "vsock:2:1234"})
    assert not notifier.enabled
    assert not notifier.ready()
    assert "not a unix socket" in caplog.text
