"""The in-flight window between the outbox and paho, used only by the publisher thread.

At most `size` outbox rows are handed to paho at once; a row is deleted from the outbox only
when its PUBACK arrives. paho itself re-sends QoS 1/2 messages that were in flight when the
connection dropped (they keep their mids), so those stay in the window across a reconnect;
QoS 0 messages are simply lost with the connection, so their rows are sent again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from edgecam.sinks.outbox import Outbox

log = logging.getLogger(__name__)


@dataclass
class WindowCounters:
    published: int = 0  # rows handed to paho (re-sends of QoS 0 rows included)
    acked: int = 0  # PUBACK with a success reason code
    rejected: int = 0  # PUBACK with an error reason code: the broker will never take it


class InflightWindow:
    """mid -> outbox row bookkeeping; not thread-safe by design (one publisher thread)."""

    def __init__(self, outbox: Outbox, size: int) -> None:
        self.outbox = outbox
        self.size = size
        self.counters = WindowCounters()
        self._inflight: dict[int, tuple[int, int]] = {}  # mid -> (row id, qos)
        self._cursor = 0  # highest row id handed to paho

    def __len__(self) -> int:
        return len(self._inflight)

    def settle(self, acked: list[tuple[int, bool]]) -> int:
        """Delete the rows whose (mid, success) acknowledgements arrived; returns rows deleted."""
        rows = []
        for mid, ok in acked:
            entry = self._inflight.pop(mid, None)
            if entry is None:
                continue  # status/stats/discovery: published directly, not from the outbox
            rows.append(entry[0])
            if ok:
                self.counters.acked += 1
            else:
                self.counters.rejected += 1
                log.error(
                    "MQTT broker rejected outbox message %d (PUBACK error): dropped", entry[0]
                )
        return self.outbox.delete(rows) if rows else 0

    def connection_lost(self) -> None:
        """QoS 0 messages in flight died with the connection: hand those rows over again."""
        lost = {mid: row for mid, (row, qos) in self._inflight.items() if qos == 0}
        for mid in lost:
            del self._inflight[mid]
        if lost:
            self._cursor = min(self._cursor, min(lost.values()) - 1)

    def fill(self, client: mqtt.Client) -> int:
        """Hand the oldest waiting rows to paho until the window is full; returns how many."""
        room = self.size - len(self._inflight)
        if room <= 0:
            return 0
        busy = {row for row, _ in self._inflight.values()}
        sent = 0
        for row in self.outbox.peek(self._cursor, room + len(busy)):
            if row.id in busy:
                continue
            info = client.publish(row.topic, row.payload, qos=row.qos, retain=row.retain)
            if row.qos == 0 and info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                break  # not queued by paho: try again after the reconnect
            self._inflight[info.mid] = (row.id, row.qos)
            self._cursor = row.id
            self.counters.published += 1
            sent += 1
            if sent == room:
                break
        return sent
