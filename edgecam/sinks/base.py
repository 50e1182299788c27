"""Sinks: where results go (JSON lines, MQTT). The pipeline only knows this Protocol."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from edgecam.types import Result


@runtime_checkable
class Sink(Protocol):
    """`handle` is called on the pipeline's thread and must not block on I/O it cannot bound."""

    def handle(self, result: Result) -> None: ...

    def close(self, timeout: float) -> None:
        """Flush within `timeout` seconds; anything not delivered by then stays persisted."""
        ...
