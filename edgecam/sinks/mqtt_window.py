"""The in-flight window between the message queue and paho, used only by the publisher thread.

At most `size` messages are handed to paho at once; a message leaves the queue (its outbox
row deleted, or its memory slot freed) only when its PUBACK arrives. paho itself re-sends
QoS 1/2 messages that were in flight when the connection dropped (they keep their mids), so
those stay in the window across a reconnect; QoS 0 messages are simply lost with the
connection, so they are handed over again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from edgecam.sinks.mqtt_queue import MessageQueue, Pending

log = logging.getLogger(__name__)


@dataclass
class WindowCounters:
    published: int = 0  # messages handed to paho (re-sends of QoS 0 ones included)
    acked: int = 0  # PUBACK with a success reason code
    rejected: int = 0  # PUBACK with an error reason code, or refused by paho: never delivered


class InflightWindow:
    """mid -> message bookkeeping; not thread-safe by design (one publisher thread)."""

    def __init__(self, queue: MessageQueue, size: int) -> None:
        self.queue = queue
        self.size = size
        self.counters = WindowCounters()
        self._inflight: dict[int, Pending] = {}

    def __len__(self) -> int:
        return len(self._inflight)

    def settle(self, acked: list[tuple[int, bool]]) -> int:
        """Release the messages whose (mid, success) acknowledgements arrived; returns how many."""
        done = []
        for mid, ok in acked:
            message = self._inflight.pop(mid, None)
            if message is None:
                continue  # status/stats/discovery: published directly, not from the queue
            done.append(message)
            if ok:
                self.counters.acked += 1
            else:
                self.counters.rejected += 1
                log.error("MQTT broker rejected a message on %s (PUBACK error)", message.topic)
        if done:
            self.queue.settle(done)
        return len(done)

    def in_flight(self) -> list[Pending]:
        """Messages handed to paho and not acknowledged yet, oldest first."""
        return [self._inflight[mid] for mid in sorted(self._inflight)]

    def connection_lost(self) -> None:
        """QoS 0 messages in flight died with the connection: hand them over again."""
        lost = [mid for mid, message in self._inflight.items() if message.qos == 0]
        if lost:
            self.queue.requeue([self._inflight.pop(mid) for mid in sorted(lost)])

    def fill(self, client: mqtt.Client) -> int:
        """Hand the oldest waiting messages to paho until the window is full; returns how many."""
        room = self.size - len(self._inflight)
        if room <= 0:
            return 0
        batch = self.queue.take(room)
        for i, message in enumerate(batch):
            try:
                info = client.publish(
                    message.topic, message.payload, qos=message.qos, retain=message.retain
                )
            except ValueError as exc:  # paho refuses it (topic, size): it never will take it
                self.counters.rejected += 1
                log.error("MQTT: cannot publish a message on %s (%s): dropped", message.topic, exc)
                self.queue.settle([message])
                continue
            if message.qos == 0 and info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                self.queue.requeue(batch[i:])  # not queued by paho: again after the reconnect
                return i
            self._inflight[info.mid] = message
            self.counters.published += 1
        return len(batch)
