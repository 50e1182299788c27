"""Command topics: the switches and the button Home Assistant (or any client) drives over MQTT.

edgecam subscribes to ``<prefix>/<device>/set/+`` and answers on the retained
``<prefix>/<device>/state/<switch>``:

- ``set/detect`` ON/OFF: OFF stops inference (frames are still read, the watchdog stays fed),
  ends every open track as a shutdown does (occupancy goes off, counts to 0); ON resumes.
- ``set/snapshots`` ON/OFF: event snapshots (MQTT and the snapshot directory) on or off.
- ``set/snapshot`` PRESS: the next frame goes out as a JPEG on ``<device>/snapshot``
  (one frame is inferred for it even while detection is off).

Who may publish there is the broker's business (ACLs; docs/homeassistant.md has a Mosquitto
example). Whatever arrives, a bad payload is logged (rate-limited) and ignored; retained
commands are ignored too, because a broker would replay them on every reconnect (a retained
PRESS would take a snapshot each time). Switch states start from the config on every start.

Threads: commands arrive on paho's network thread and only flip flags here; the pipeline's
output thread acts on them (:class:`ControlSink`, the events sink), so events and snapshots
are never produced from two threads at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt

from edgecam.core.annotate import SnapshotOptions, annotate, encode_jpeg, fit, to_bgr
from edgecam.core.controls import CommandError, parse_command, state_payload
from edgecam.core.hass import Topics
from edgecam.types import Detections, Result

log = logging.getLogger(__name__)

#: (topic, payload, qos, retain) -> True when handed to the network.
Publish = Callable[[str, bytes, int, bool], bool]
_WARN_EVERY_S = 10.0


class Controls:
    """The switch states, shared by paho's thread (writer) and the pipeline threads (readers)."""

    def __init__(self, *, detect: bool = True, snapshots: bool = True) -> None:
        self._lock = threading.Lock()
        self._detect = detect
        self._paused = not detect  # inference actually skipped (after the sinks saw OFF)
        self._snapshots = snapshots
        self._still_wanted = False
        #: Bumped by every detect switch: a pause is confirmed only when the sinks of a frame
        #: saw OFF of the switch still current at the frame's end (see frame_done).
        self._generation = 0
        self._seen: tuple[int, bool] | None = None

    @property
    def detect(self) -> bool:
        return self._detect

    @property
    def snapshots(self) -> bool:
        return self._snapshots

    def detect_for_frame(self) -> bool:
        """The detect switch as the events sink acts on it for the frame in hand (output
        thread); remembered, so frame_done knows what this frame's sinks saw."""
        with self._lock:
            self._seen = (self._generation, self._detect)
            return self._detect

    def set_detect(self, on: bool) -> None:
        with self._lock:
            self._detect = on
            self._generation += 1
            if on:
                self._paused = False

    def set_snapshots(self, on: bool) -> None:
        self._snapshots = on

    def request_still(self) -> None:
        with self._lock:  # frame_done reads and clears it: a press in between is not lost
            self._still_wanted = True

    def admit(self) -> bool:
        """The pipeline's per-frame question: run inference on this frame?

        True while detection is on, until the sinks have seen one frame after it went off (so
        the events sink ends open tracks on the output thread), and for a requested still.
        """
        return not self._paused or self._still_wanted

    def frame_done(self) -> bool:
        """Called once per result after every other sink; True if a still is due now.

        Detection off is confirmed (inference stops) only when the sinks of this frame saw
        this very OFF, or no sink asked: had OFF arrived after the events sink read ON, no
        later frame would reach it to end the open tracks, and occupancy would stay on.
        """
        with self._lock:
            if not self._detect and self._seen in (None, (self._generation, False)):
                self._paused = True
            self._seen = None
            due, self._still_wanted = self._still_wanted, False
        return due


class CommandTopics:
    """Subscribes to ``set/+``, applies commands to :class:`Controls`, publishes states."""

    def __init__(self, controls: Controls, topics: Topics, *, qos: int = 1) -> None:
        self.controls = controls
        self.topics = topics
        self.qos = qos
        self.subscription = topics.command("+")
        self._prefix = topics.command("")
        self._warned_at = float("-inf")
        self.rejected = 0

    def on_connect(self, client: mqtt.Client, publish: Publish, snapshots: bool) -> None:
        client.subscribe(self.subscription, qos=1)
        self.publish_states(publish, snapshots)

    def publish_states(self, publish: Publish, snapshots: bool) -> None:
        publish(self.topics.state("detect"), _state(self.controls.detect), self.qos, True)
        if snapshots:
            publish(self.topics.state("snapshots"), _state(self.controls.snapshots), self.qos, True)

    def handles(self, topic: str) -> bool:
        return topic.startswith(self._prefix) and "/" not in topic[len(self._prefix) :]

    def on_message(self, message: mqtt.MQTTMessage, publish: Publish, snapshots: bool) -> None:
        topic = message.topic
        if message.retain:
            self._reject(topic, "retained commands are ignored (publish them with retain off)")
            return
        try:
            command = parse_command(topic[len(self._prefix) :], bytes(message.payload))
            if command.name == "snapshots" and not snapshots:
                raise CommandError("snapshots: [snapshots] enabled = false in the config")
        except CommandError as exc:
            self._reject(topic, str(exc))
            return
        if command.name == "detect":
            self.controls.set_detect(command.on)
            log.info("detection switched %s by %s", state_payload(command.on), topic)
        elif command.name == "snapshots":
            self.controls.set_snapshots(command.on)
            log.info("snapshots switched %s by %s", state_payload(command.on), topic)
        else:
            self.controls.request_still()
            log.info("snapshot requested by %s", topic)
        self.publish_states(publish, snapshots)

    def _reject(self, topic: str, why: str) -> None:
        """Log at most one rejection per interval: a flood of junk must not flood the log."""
        self.rejected += 1
        now = time.monotonic()
        if now - self._warned_at >= _WARN_EVERY_S:
            self._warned_at = now
            log.warning("ignored command on %s: %s (%d rejected so far)", topic, why, self.rejected)


def _state(on: bool) -> bytes:
    return state_payload(on).encode()


class ControlSink:
    """The last sink: confirms a detection pause to Controls and publishes requested stills."""

    def __init__(
        self,
        controls: Controls,
        topics: Topics,
        publish: Publish,
        options: SnapshotOptions | None = None,
    ) -> None:
        self.controls = controls
        self.topics = topics
        self.publish = publish
        self.options = options or SnapshotOptions()
        self.stills = 0

    def handle(self, result: Result) -> None:
        if not self.controls.frame_done() or result.frame is None:
            return
        image = to_bgr(result.frame)
        if self.options.draw and isinstance(result.output, Detections):
            image = annotate(image, result.output)  # a copy: the frame stays untouched
        jpeg = encode_jpeg(fit(image, self.options.max_size), self.options.quality)
        if self.publish(self.topics.still, jpeg, 0, True):
            self.stills += 1
        else:
            log.warning("snapshot not published: the MQTT broker is not connected")

    def close(self, timeout: float = 0.0) -> None:
        """Nothing to flush: stills are never queued."""
