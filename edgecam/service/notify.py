"""sd_notify: tell the service manager we are ready, alive, stopping, and what we are doing.

The protocol is one AF_UNIX datagram of `KEY=VALUE` lines to the socket named by
`$NOTIFY_SOCKET` (a leading '@' means Linux's abstract namespace). Speaking it directly keeps
it testable with a plain datagram socket and needs no systemd library. Without
`$NOTIFY_SOCKET` (not under systemd, or Type= is not notify) every call is a cheap no-op.

The watchdog interval comes from `$WATCHDOG_USEC` (WatchdogSec= of the unit); systemd
advises pinging at half of it, which is what :attr:`Notifier.watchdog_interval_s` exposes.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)


def _parse_watchdog(environ: Mapping[str, str], pid: int) -> float | None:
    """Half of WATCHDOG_USEC in seconds, or None when no watchdog is asked of this process."""
    usec = environ.get("WATCHDOG_USEC", "").strip()
    if not usec:
        return None
    owner = environ.get("WATCHDOG_PID", "").strip()
    if owner and owner != str(pid):  # inherited by a child process: not ours to feed
        return None
    try:
        value = int(usec)
    except ValueError:
        log.warning("ignoring WATCHDOG_USEC=%r: not an integer", usec)
        return None
    return value / 2_000_000 if value > 0 else None


def _address(raw: str) -> str | None:
    if raw.startswith("@"):
        return "\0" + raw[1:]  # abstract namespace
    if raw.startswith("/"):
        return raw
    return None  # e.g. vsock:... which systemd uses for VMs; not for us


class Notifier:
    """Sends sd_notify messages; a no-op when `$NOTIFY_SOCKET` is unset.

    Thread-safe: the pipeline's output thread pings the watchdog while the main thread may
    send STOPPING=1 from a signal handler.
    """

    def __init__(
        self,
        environ: Mapping[str, str] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        env = os.environ if environ is None else environ
        raw = env.get("NOTIFY_SOCKET", "")
        self.socket_path = raw or None
        self._address = _address(raw) if raw else None
        if raw and self._address is None:
            log.warning("NOTIFY_SOCKET=%r is not a unix socket path: not notifying", raw)
        self.watchdog_interval_s = _parse_watchdog(env, os.getpid())
        self._clock = clock
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._last_ping: float | None = None
        self._last_status: str | None = None
        self._failed = False

    @property
    def enabled(self) -> bool:
        return self._address is not None

    @property
    def watchdog_enabled(self) -> bool:
        return self.enabled and self.watchdog_interval_s is not None

    def notify(self, *assignments: str) -> bool:
        """Send `KEY=VALUE` lines in one datagram; False if not sent (disabled or failed)."""
        if self._address is None or not assignments:
            return False
        payload = "\n".join(assignments).encode("utf-8", "replace")
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                    self._sock.setblocking(False)  # never let the service manager stall us
                self._sock.sendto(payload, self._address)
            except OSError as exc:
                if not self._failed:  # say it once; the service manager may be restarting
                    log.warning("sd_notify to %s failed: %s", self.socket_path, exc)
                    self._failed = True
                return False
        self._failed = False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *self._status_lines(status))

    def stopping(self, status: str | None = None) -> bool:
        return self.notify("STOPPING=1", *self._status_lines(status))

    def _status_lines(self, status: str | None) -> list[str]:
        if not status:
            return []
        self._last_status = " ".join(status.split())
        return [f"STATUS={self._last_status}"]

    def status(self, text: str) -> bool:
        """One-line STATUS= (shown by `systemctl status`); unchanged text is not resent."""
        text = " ".join(text.split())
        if text == self._last_status:
            return False
        self._last_status = text
        return self.notify(f"STATUS={text}")

    def watchdog(self) -> bool:
        """WATCHDOG=1, rate-limited; call it whenever real work progressed, never from a timer."""
        if self.watchdog_interval_s is None or self._address is None:
            return False
        now = self._clock()
        with self._lock:
            # Half the advised interval: with progress every second or so, two pings are never
            # further apart than the advised interval (a quarter of WatchdogSec=).
            gap = self.watchdog_interval_s / 2
            if self._last_ping is not None and now - self._last_ping < gap:
                return False
            self._last_ping = now
        return self.notify("WATCHDOG=1")

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
