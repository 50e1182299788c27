"""Whether the MQTT publisher can go on: failures in its threads are never swallowed.

Two threads run the sink's code: the publisher loop and paho's network loop (our callbacks).
paho only logs a callback's exception and carries on (`suppress_exceptions`), so a lost
PUBACK would stall delivery for good; a publisher loop restarted after an unexpected error
repeats it forever behind a green watchdog. Both are bugs, and retrying cannot fix a bug: the
guard records the first one (one ERROR line naming the exception and where it happened, the
traceback at DEBUG) and the sink then fails the run. It also notices a loop that stopped
passing (hung in a driver call or on a lock), which the service reports to the watchdog.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from edgecam.errors import describe_bug

log = logging.getLogger(__name__)

#: The publisher loop passes at least every 0.5 s; this long without a pass means it hangs.
STALL_S = 60.0


class PublisherGuard:
    """Written by paho's and the publisher's threads (under a lock), read by the pipeline's."""

    def __init__(self, wake: Callable[[], None], clock: Callable[[], float] = time.monotonic):
        self.failure: str | None = None
        self._lock = threading.Lock()
        self._wake = wake
        self._clock = clock
        self._beat = clock()

    def beat(self) -> None:
        """The publisher loop passed."""
        self._beat = self._clock()

    def crashed(self, exc: BaseException) -> None:
        """Said once (paho's thread and the publisher's may both fail), and logged before it
        shows: whoever sees the failure can also read why."""
        with self._lock:
            if self.failure is None:
                failure = f"MQTT publisher stopped: {describe_bug(exc)}"
                log.error("%s; edgecam stops with exit status 1", failure)
                self.failure = failure
        log.debug("traceback", exc_info=exc)
        self._wake()

    def guard(self, callback: Callable[..., None]) -> Callable[..., None]:
        """`callback` for paho, with its exceptions turned into a run failure."""

        @functools.wraps(callback)
        def run(*args: Any) -> None:
            try:
                callback(*args)
            except Exception as exc:  # paho's thread: a run failure, not a log line
                self.crashed(exc)

        return run

    def problem(self, loop_running: bool) -> str | None:
        """Why the publisher cannot go on, or None."""
        if self.failure is not None:
            return self.failure
        age = self._clock() - self._beat
        if loop_running and age > STALL_S:
            return f"MQTT publisher stuck for {age:.0f} s"
        return None
