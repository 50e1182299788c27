"""Sinks: where results go (JSON lines, MQTT). The pipeline only knows this Protocol."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from edgecam.types import Result

#: ok; degraded: working around a problem (shown in STATUS= and stats); failed: cannot go on,
#: the run stops with exit status 1 and the watchdog is no longer fed.
HealthState = Literal["ok", "degraded", "failed"]


@dataclass(frozen=True, slots=True)
class SinkHealth:
    """What a sink tells the service: `summary` for the status line ("connected",
    "disconnected, 12 queued"), `problem` (one line) unless ok."""

    state: HealthState
    summary: str
    problem: str | None = None


@runtime_checkable
class Sink(Protocol):
    """`handle` is called on the pipeline's thread and must not block on I/O it cannot bound."""

    def handle(self, result: Result) -> None: ...

    def close(self, timeout: float) -> None:
        """Flush within `timeout` seconds; anything not delivered by then stays persisted."""
        ...
