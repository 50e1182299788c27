"""MQTT sink: results -> on-disk outbox -> broker, never blocking the pipeline on the network.

`handle()` builds the payload, commits it to the outbox and returns (tens of microseconds). A
publisher thread hands the oldest rows to paho, at most `max_inflight` at a time, and deletes a
row only when the broker's PUBACK arrives. paho re-sends its in-flight messages after a
reconnect, to whichever node of a cluster accepted it (mqtt_nodes); rows never handed over
stay on disk across restarts and are sent first on the next start.
Duplicates are possible (QoS 1 is at-least-once) and recognisable by (run_id, seq).
When the outbox cannot store (disk full), messages wait in memory instead (mqtt_queue).

Failures are never swallowed: a storage failure is handled where it happens (mqtt_queue) and
shows in `health()`; anything else that stops the publisher thread is a bug that fails the
run (the next `handle()` and `close()` raise SinkError, the service stops feeding the watchdog).

Not through the outbox, by design: `status` (Last Will + retained online/offline), `stats` and
Home Assistant discovery (retained latest values: queuing stale ones helps nobody; they are
re-sent on every connect), and snapshots (QoS 0, retained, dropped while disconnected: a
100 kB JPEG per event would evict detections from the byte-capped outbox, and only the latest
picture per label matters).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from edgecam.config.mqtt import MqttSection
from edgecam.config.outbox import OutboxSection
from edgecam.core.payload import (
    build_event_payload,
    build_result_payload,
    build_stats_payload,
    encode_json,
    label_topic_level,
    new_run_id,
)
from edgecam.errors import SinkError
from edgecam.pipeline.metrics import CpuMeter, process_age_s, rss_mb
from edgecam.schema import parse_event
from edgecam.sinks.base import SinkHealth
from edgecam.sinks.mqtt_guard import PublisherGuard
from edgecam.sinks.mqtt_hass import HassSetup, HomeAssistantLink
from edgecam.sinks.mqtt_nodes import NodeLink
from edgecam.sinks.mqtt_queue import MessageQueue, open_queue
from edgecam.sinks.mqtt_window import InflightWindow
from edgecam.types import Detections, Result

log = logging.getLogger(__name__)
StatsProvider = Callable[[], Mapping[str, Any]]


def _dumps(payload: Mapping[str, Any]) -> bytes:
    return encode_json(payload)


class MqttSink:
    """Publishes the documented contract for one device; see docs/mqtt.md."""

    def __init__(
        self,
        cfg: MqttSection,
        queue: MessageQueue,
        *,
        device_id: str,
        model: str,
        stats_provider: StatsProvider | None = None,
        stats_interval_s: float = 10.0,
        homeassistant: HassSetup | None = None,
        run_id: str | None = None,
    ) -> None:
        self.cfg = cfg
        self.queue = queue
        self.device_id = device_id
        self.model = model
        self.run_id = run_id or new_run_id()
        self.root = f"{cfg.topic_prefix}/{device_id}"
        self._stats_provider = stats_provider
        self._stats_interval_s = stats_interval_s
        self._cond = threading.Condition()
        self._acked: list[tuple[int, bool]] = []  # (mid, success) from the network thread
        self._connected = False
        self._stop = False
        self._closed = False
        self._rewind = False
        self._wake = False  # set with every notify, so a wake-up between waits is never lost
        self._ever_connected = False
        self._window = InflightWindow(queue, cfg.max_inflight)  # publisher thread only
        self._guard = PublisherGuard(self._notify)
        self._seq_lock = threading.Lock()
        self._seq: Counter[str] = Counter()
        self._counts: dict[str, int] = {}
        self._cpu = CpuMeter()
        self.reconnects = 0
        self.snapshots_skipped = 0
        self.link = NodeLink(
            cfg,
            client_id=cfg.client_id or f"edgecam-{device_id}",
            status_topic=self.topic("status"),
            persistent=True,
            lost_note="buffering in the outbox",
            wrap=self._guard.guard,
        )
        self.client = self.link.client
        # Home Assistant hook: discovery, states from tracks, command topics (mqtt_hass.py).
        self.hass = (
            HomeAssistantLink(homeassistant, self.publish_now, qos=cfg.qos)
            if homeassistant is not None
            else None
        )
        self._wire_callbacks()
        self._thread = threading.Thread(
            target=self._run, name="edgecam-mqtt-publisher", daemon=True
        )

    # -- public API ------------------------------------------------------------------------

    def topic(self, kind: str, label: str | None = None) -> str:
        return f"{self.root}/{kind}" + (f"/{label_topic_level(label)}" if label is not None else "")

    @property
    def state(self) -> str:
        return "connected" if self._connected else "disconnected"

    @property
    def published(self) -> int:
        """Messages handed to the network this run."""
        return self._window.counters.published

    @property
    def acked(self) -> int:
        """Messages the broker acknowledged this run."""
        return self._window.counters.acked

    @property
    def dropped(self) -> int:
        """Messages that will never be delivered, this run (outbox cap, memory overflow)."""
        return self.queue.counters()["messages_dropped"]

    @property
    def outbox_depth(self) -> int:
        """Messages waiting for their PUBACK, on disk or in memory."""
        return self.queue.pending

    def health(self) -> SinkHealth:
        """For the service's status line and watchdog; cheap, no I/O."""
        failure = self._guard.problem(self._thread.is_alive())
        if failure is not None:
            return SinkHealth("failed", self.state, failure)
        pending = self.queue.pending
        summary = self.state
        if pending and not self._connected:
            summary = f"{summary}, {pending} queued"
        state, problem = self.queue.health()
        return SinkHealth(state, summary, problem)

    def start(self) -> None:
        """Bounded first connection round over the broker's nodes, then background publishing
        (SinkError if fatal)."""
        try:
            self.link.start(unreachable_ok=True)
        except BaseException:
            self.queue.close()
            raise
        self._thread.start()

    def handle(self, result: Result) -> None:
        """Queue one frame's message (never blocks on the network); SinkError once the
        publisher cannot go on, so the run stops instead of piling up undeliverable messages."""
        self._raise_if_failed()
        output = result.output
        if isinstance(output, Detections) and self.cfg.publish_counts:
            self._update_counts(output.label)
        if not self.cfg.publish_detections:
            return  # events only: see publish_event
        if len(output) == 0 and not self.cfg.publish_empty_frames:
            return
        kind = "detections" if isinstance(output, Detections) else "classification"
        end_to_end = (time.monotonic() - result.monotonic) * 1000
        payload = build_result_payload(
            result,
            device_id=self.device_id,
            run_id=self.run_id,
            seq=self._next_seq(kind),
            end_to_end_ms=end_to_end,
        )
        self._enqueue(self.topic(kind), _dumps(payload), retain=False)

    def publish_event(self, event: Mapping[str, Any]) -> None:
        """One tracker event through the outbox; raises PayloadError if it breaks the contract."""
        payload = build_event_payload(
            event,
            device_id=self.device_id,
            run_id=self.run_id,
            seq=self._next_seq("events"),
            model=self.model,
        )
        parse_event(payload)
        self._enqueue(self.topic("events"), _dumps(payload), retain=False)
        if self.hass is not None:  # Home Assistant hook
            self.hass.on_event(event)

    def publish_count(self, label: str, count: int) -> None:
        """Retained `count/<label>` through the outbox (the tracker's object count)."""
        if self.hass is not None:  # Home Assistant hook: published there, as a latest value
            return
        self._enqueue(self.topic("count", label), str(int(count)).encode(), retain=True)

    def publish_snapshot(self, label: str, jpeg: bytes) -> bool:
        """Retained QoS 0 `snapshot/<label>`; skipped (False) while disconnected, see module doc."""
        if not self._connected:
            self.snapshots_skipped += 1
            return False
        info = self.client.publish(self.topic("snapshot", label), jpeg, qos=0, retain=True)
        return info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS

    def counters(self) -> dict[str, Any]:
        health = self.health()
        return {
            "state": self.state,
            **self.queue.counters(),
            "health": health.state,
            "problem": health.problem,
            "messages_rejected": self._window.counters.rejected,
            "published": self.published,
            "acked": self.acked,
            "reconnects": self.reconnects,
            "broker": self.link.where,
            "protocol": self.link.protocol,
        }

    def close(self, timeout: float = 5.0) -> None:
        """Drain while connected (up to `timeout`), publish `offline`; the rest stays on disk.

        SinkError (after closing everything) if the publisher failed, or if messages only
        memory held were neither delivered nor stored: that loss must not exit 0.
        """
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            self._cond.wait_for(
                lambda: self.queue.pending == 0 or not self._connected or self._guard.failure,
                max(0.0, timeout),
            )
            self._stop = self._wake = True
            self._cond.notify_all()
        self._thread.join(max(0.1, deadline - time.monotonic()))
        # A plain DISCONNECT would suppress the Last Will: leave so that the broker sends it.
        self.link.stop(will=self._connected and not self._publish_offline(deadline))
        stored = self.queue.pending - self.queue.in_memory
        if stored:
            log.info("%d message(s) stay in the outbox for the next start", stored)
        lost = self.queue.close(self._window.in_flight())
        self._raise_if_failed()
        if lost:
            raise SinkError(
                f"MQTT: {lost} message(s) neither delivered nor stored at stop"
                " (the outbox could not write; see the log for totals)",
                "free space for the outbox (df -h); see the README on a full disk",
            )

    def _publish_offline(self, deadline: float) -> bool:
        """Retained `offline`, confirmed by the broker before the clean DISCONNECT."""
        info = self.client.publish(self.topic("status"), "offline", qos=1, retain=True)
        try:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
        except (RuntimeError, ValueError) as exc:  # not even queued: the connection just died
            log.warning(
                "MQTT: cannot publish the 'offline' status (%s): the Last Will says it", exc
            )
            return False
        if info.is_published():
            return True
        log.warning(
            "MQTT broker did not confirm the 'offline' status before the stop deadline:"
            " disconnecting with the Last Will instead"
        )
        return False

    def _raise_if_failed(self) -> None:
        if self._guard.failure is not None:
            raise SinkError(self._guard.failure, "a bug in edgecam: please report this line")
        health = self.health()
        if health.state == "failed":
            raise SinkError(health.problem or "MQTT publisher failed")

    # -- producer side ---------------------------------------------------------------------

    def _next_seq(self, stream: str) -> int:
        with self._seq_lock:
            value = self._seq[stream]
            self._seq[stream] = value + 1
        return value

    def _enqueue(self, topic: str, payload: bytes, *, retain: bool) -> None:
        if self._closed:  # a late call during shutdown: the outbox is (being) closed
            log.debug("%s after close: not published", topic)
            return
        self.queue.put(topic, payload, self.cfg.qos, retain)
        self._notify()

    def _notify(self) -> None:
        with self._cond:
            self._wake = True
            self._cond.notify_all()

    def _update_counts(self, labels: tuple[str, ...]) -> None:
        """Retained per-label count of the latest frame, published only when it changes."""
        now = Counter(labels)
        for label in self._counts.keys() | now.keys():
            n = now.get(label, 0)
            if self._counts.get(label) != n:
                self._counts[label] = n
                self._enqueue(self.topic("count", label), str(n).encode(), retain=True)

    # -- network thread callbacks (paho's loop thread) --------------------------------------

    def _wire_callbacks(self) -> None:
        """Connection callbacks belong to the link (which node, which version); these hooks
        run in paho's network thread, like the guarded PUBACK and message callbacks."""
        guard = self._guard.guard
        self.link.on_up = self._on_up
        self.link.on_down = self._on_down
        self.client.on_publish = guard(self._on_publish)
        self.client.on_message = guard(self._on_message)

    def _on_up(self, client: mqtt.Client, _session_present: bool) -> None:
        client.publish(self.topic("status"), "online", qos=1, retain=True)
        if self.hass is not None:  # Home Assistant hook
            self.hass.on_connect(client)
        with self._cond:
            self.reconnects += self._ever_connected
            self._ever_connected = self._connected = True
            self._wake = True
            self._cond.notify_all()

    def _on_down(self) -> None:
        with self._cond:
            self._connected = False
            self._rewind = self._wake = True
            self._cond.notify_all()

    def _on_publish(self, _c: mqtt.Client, _u: Any, mid: int, reason: Any, _p: Any) -> None:
        with self._cond:
            self._acked.append((mid, not reason.is_failure))
            self._wake = True
            self._cond.notify_all()

    def _on_message(self, client: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        """Only the Home Assistant hook subscribes (HA restarts, its configs, commands)."""
        if self.hass is not None:
            self.hass.on_message(client, message)

    def publish_now(self, topic: str, payload: bytes, qos: int, retain: bool) -> bool:
        """Home Assistant hook: a latest value straight to paho, never queued; False (and
        nothing sent) while disconnected."""
        if self._closed or not self.client.is_connected():  # paho's view: set before on_connect
            return False
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        return info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS

    # -- publisher thread ------------------------------------------------------------------

    def _run(self) -> None:
        """Publisher thread. Storage failures are handled inside (mqtt_queue); anything that
        still escapes is a bug, which fails the run (see mqtt_guard)."""
        try:
            self._publish_loop()
        except Exception as exc:  # the thread's top: a run failure, not swallowed
            self._guard.crashed(exc)

    def _publish_loop(self) -> None:
        next_stats = 0.0  # publish stats as soon as we are connected, then every interval
        while True:
            self._guard.beat()
            self.queue.maintain()
            with self._cond:
                timeout = min(0.5, max(0.0, next_stats - time.monotonic()))
                self._cond.wait_for(lambda: self._wake, timeout)
                acked, self._acked = self._acked, []
                connected, stop, rewind = self._connected, self._stop, self._rewind
                self._rewind = self._wake = False
            if self._window.settle(acked):
                self._notify()  # close() waits for the outbox to empty
            if rewind:
                self._window.connection_lost()
                next_stats = 0.0
            if stop:
                return
            if connected:
                self._window.fill(self.client)
                if time.monotonic() >= next_stats:
                    next_stats = time.monotonic() + self._stats_interval_s
                    self._publish_stats()

    def _publish_stats(self) -> None:
        pipeline = dict(self._stats_provider()) if self._stats_provider else {}
        payload = build_stats_payload(
            device_id=self.device_id,
            run_id=self.run_id,
            model=self.model,
            now=time.time(),
            uptime_s=process_age_s() or 0.0,
            cpu_percent=self._cpu.percent(),
            rss_mb=rss_mb(),
            pipeline=pipeline,
            mqtt=self.counters(),
        )
        self._cpu.reset()
        self.client.publish(self.topic("stats"), _dumps(payload), qos=self.cfg.qos, retain=True)


def open_mqtt_sink(
    cfg: MqttSection,
    outbox_cfg: OutboxSection,
    *,
    device_id: str,
    model: str,
    stats_provider: StatsProvider | None = None,
    stats_interval_s: float = 10.0,
    homeassistant: HassSetup | None = None,
    run_id: str | None = None,
    state_dir: Path | None = None,
) -> MqttSink:
    """Open the outbox (``outbox.path``, else in ``state_dir``), connect (bounded), start
    publishing. SinkError/ConfigError if fatal."""
    if cfg.password is not None:
        log.warning("mqtt.password is set in the config file: prefer password_file or password_env")
    queue = open_queue(outbox_cfg, state_dir)
    try:
        sink = MqttSink(
            cfg,
            queue,
            device_id=device_id,
            model=model,
            stats_provider=stats_provider,
            stats_interval_s=stats_interval_s,
            homeassistant=homeassistant,
            run_id=run_id,
        )
    except BaseException:
        queue.close()
        raise
    sink.start()
    return sink
