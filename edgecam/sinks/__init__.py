"""Sinks: where results go (JSON lines, MQTT with its outbox, events, snapshots).

The pipeline only knows the `Sink` protocol (:mod:`edgecam.sinks.base`).
"""

from edgecam.sinks.base import Sink

__all__ = ["Sink"]
