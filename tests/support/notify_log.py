"""A datagram socket in the role of systemd's notify socket, for processes under test."""

from __future__ import annotations

import contextlib
import socket
import time


class NotifyLog:
    """Collects datagrams from the process under test."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.messages: list[dict[str, str]] = []

    def wait_for(self, key: str, timeout: float) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                text = self.sock.recv(4096).decode()
            except TimeoutError:
                break
            message = dict(line.split("=", 1) for line in text.split("\n"))
            self.messages.append(message)
            if key in message:
                return message
        raise AssertionError(f"no {key}= within {timeout} s; got {self.messages}")

    def collect(self, seconds: float) -> list[dict[str, str]]:
        start = len(self.messages)
        with contextlib.suppress(AssertionError):
            self.wait_for("NEVER", seconds)
        return self.messages[start:]

    def wait_quiet(self, key: str, quiet_s: float, timeout: float) -> None:
        """Until no `key` arrived for quiet_s (in-flight frames drained)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not any(key in m for m in self.collect(quiet_s)):
                return
        raise AssertionError(f"{key}= kept coming for {timeout} s")
