"""Command topics: Home Assistant's switches and button, through a real Mosquitto.

HA publishes `ON`/`OFF` to `edgecam/cam1/set/detect` and `set/snapshots`, and `PRESS` to
`set/snapshot`; edgecam applies it and answers on the retained `state/<switch>` topic. Anything
else on `set/+` (unknown command, bad payload, binary junk, a retained command, a switch the
config does not offer) is logged and ignored, and the camera goes on publishing.

Then what the switches do in the pipeline: detection OFF ends every open track once (an `end`
per object, so occupancy goes off) and makes the pipeline skip inference on every frame
(frames are still read); a snapshot request lets one frame through and publishes it on
`edgecam/cam1/snapshot`; ON resumes tracking.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edgecam.config.model import ModelSection
from edgecam.config.mqtt import validate_mqtt
from edgecam.config.outbox import OutboxSection
from edgecam.config.pipeline import PipelineSection
from edgecam.core import hass
from edgecam.core.annotate import SnapshotOptions
from edgecam.core.events import EventEngine
from edgecam.core.filters import LabelRule, ObjectFilter
from edgecam.pipeline.engine import open_engine
from edgecam.pipeline.pipeline import Pipeline
from edgecam.sinks.events import EventsSink
from edgecam.sinks.mqtt import MqttSink, open_mqtt_sink
from edgecam.sinks.mqtt_commands import Controls, ControlSink
from edgecam.sinks.mqtt_hass import HassSetup
from edgecam.sources import open_source
from edgecam.types import Frame, Result
from tests.sinks.mqtt.test_hass import last, publish
from tests.support.mosquitto import Broker, Collector
from tests.support.synthetic import moving_person

CAM = hass.Camera(device_id="cam1", model="ssd_mobilenet_v1", version="9", snapshots=True)
T = CAM.topics


@pytest.fixture
def wired(broker: Broker, tmp_path: Path) -> Iterator[Callable[..., tuple[MqttSink, Controls]]]:
    sinks: list[MqttSink] = []

    def make(camera: hass.Camera = CAM) -> tuple[MqttSink, Controls]:
        controls = Controls(snapshots=camera.snapshots)
        cfg = validate_mqtt({"url": broker.url, "reconnect_min_s": 0.1}, "test")
        sink = open_mqtt_sink(
            cfg,
            OutboxSection(path=tmp_path / f"o{len(sinks)}.db"),
            device_id=camera.device_id,
            model=camera.model,
            homeassistant=HassSetup(camera, controls),
        )
        sinks.append(sink)
        return sink, controls

    yield make
    for sink in sinks:
        sink.close(2.0)


def test_switches_follow_commands_and_report_their_state(
    broker: Broker,
    wired: Callable[..., tuple[MqttSink, Controls]],
    collector_factory: Callable[..., Collector],
) -> None:
    col = collector_factory(broker, "edgecam/cam1/state/+", persistent=False)
    _, controls = wired()
    assert col.wait_for(lambda: last(col, T.state("detect")) == b"ON", 5)
    publish(broker, T.command("detect"), "OFF")
    assert col.wait_for(lambda: last(col, T.state("detect")) == b"OFF", 5)
    assert not controls.detect
    publish(broker, T.command("snapshots"), "off")
    assert col.wait_for(lambda: last(col, T.state("snapshots")) == b"OFF", 5)
    assert not controls.snapshots
    publish(broker, T.command("detect"), "ON")
    assert col.wait_for(lambda: last(col, T.state("detect")) == b"ON", 5)
    assert controls.detect and controls.admit()
    # Retained, so HA shows the right switch position whenever it subscribes.
    late = collector_factory(broker, "edgecam/cam1/state/+", client_id="late", persistent=False)
    assert late.wait_for(lambda: last(late, T.state("snapshots")) == b"OFF", 5)


def test_bad_commands_are_logged_and_ignored(
    broker: Broker,
    wired: Callable[..., tuple[MqttSink, Controls]],
    collector_factory: Callable[..., Collector],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="edgecam.sinks.mqtt_commands")
    # Retained before edgecam connects: replayed on every (re)connect, so never applied.
    publish(broker, T.command("detect"), b"OFF", retain=True)
    lean = hass.Camera(device_id="cam1", model="ssd_mobilenet_v1", version="9")  # no snapshots
    sink, controls = wired(lean)
    col = collector_factory(broker, "edgecam/cam1/#", persistent=False)
    assert col.wait_for(lambda: last(col, T.state("detect")) == b"ON", 5)
    junk: list[tuple[str, bytes, bool]] = [
        (T.command("detect"), b"maybe", False),
        (T.command("detect"), b"\xff\xfe\x00", False),
        (T.command("detect"), b"ON" * 100, False),
        (T.command("restart"), b"PRESS", False),
        (T.command("snapshots"), b"ON", False),  # the config has no snapshots
        (T.command("snapshot"), b"ON", False),
    ]
    for topic, payload, retain in junk:
        publish(broker, topic, payload, retain=retain)
    assert sink.hass is not None and sink.hass.commands is not None
    commands = sink.hass.commands
    deadline = time.monotonic() + 5
    while commands.rejected < len(junk) + 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert commands.rejected == len(junk) + 1
    assert controls.detect and not controls.frame_done()
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings and "ignored command on edgecam/cam1/set/detect: retained" in warnings[0]
    assert len(warnings) == 1  # rate-limited: junk cannot flood the log
    # Still working: a good command after the junk is applied.
    publish(broker, T.command("detect"), "OFF")
    assert col.wait_for(lambda: last(col, T.state("detect")) == b"OFF", 5)


def _photo(asset_images: Path) -> Result:
    bgr = np.asarray(cv2.imread(str(asset_images / "pets.jpg")), np.uint8)
    frame = Frame(bgr, 7, time.time(), time.monotonic(), "t", "BGR")
    result = moving_person(7)
    return Result(
        seq=7,
        timestamp=frame.timestamp,
        monotonic=0.0,
        model="ssd_mobilenet_v1",
        width=bgr.shape[1],
        height=bgr.shape[0],
        output=result.output,
        frame=frame,
    )


def test_the_button_publishes_a_still_of_the_next_frame(
    broker: Broker,
    wired: Callable[..., tuple[MqttSink, Controls]],
    collector_factory: Callable[..., Collector],
    asset_images: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="edgecam.sinks.mqtt_commands")
    sink, controls = wired()
    col = collector_factory(broker, T.still, persistent=False)
    still = ControlSink(controls, T, sink.publish_now, SnapshotOptions(max_size=320))
    result = _photo(asset_images)
    still.handle(result)  # nothing requested: nothing published
    publish(broker, T.command("snapshot"), "PRESS")
    deadline = time.monotonic() + 5
    while "snapshot requested" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.02)  # the press is applied on paho's thread, which says so
    still.handle(result)
    still.handle(result)  # one press, one picture
    assert col.wait_for(lambda: bool(col.messages), 5)
    time.sleep(0.2)
    assert len(col.messages) == 1 and still.stills == 1
    image = cv2.imdecode(np.frombuffer(col.messages[0].payload, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and max(image.shape[:2]) == 320
    late = collector_factory(broker, T.still, client_id="late", persistent=False)
    assert late.wait_for(lambda: bool(late.messages) and late.messages[0].retain, 5)


class Recorder:
    """An EventOutput that keeps what it gets."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def publish_event(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def publish_count(self, label: str, count: int) -> None:
        pass

    def publish_snapshot(self, label: str, jpeg: bytes) -> bool:
        return True


def test_detection_off_ends_tracks_once_and_on_resumes() -> None:
    controls = Controls(snapshots=False)
    out = Recorder()
    engine = EventEngine(filters=ObjectFilter(LabelRule(confirm_frames=3, confirm_score=0.6)))
    events = EventsSink(engine, [out], device_id="cam1", run_id="r", model="m", switches=controls)
    last_sink = ControlSink(controls, T, lambda *_: True)
    seq = 0

    def frame() -> None:
        nonlocal seq
        result = moving_person(seq)
        seq += 1
        events.handle(result)
        last_sink.handle(result)

    for _ in range(5):
        frame()
    assert [e["event"] for e in out.events] == ["new"]
    controls.set_detect(False)
    assert controls.admit()  # one more frame, so the sinks see the switch on their thread
    frame()
    assert [e["event"] for e in out.events] == ["new", "end"]
    assert out.events[-1]["reasons"] == ["shutdown"]
    assert not controls.admit()
    controls.request_still()
    assert controls.admit()  # the still's frame goes through ...
    frame()
    assert not controls.admit() and len(out.events) == 2  # ... and tracks nothing
    controls.set_detect(True)
    assert controls.admit()
    for _ in range(5):
        frame()
    assert [e["event"] for e in out.events] == ["new", "end", "new"]


def test_detection_off_arriving_mid_frame_still_ends_the_tracks() -> None:
    """OFF lands after the events sink read ON and before the last sink: one more frame is
    inferred, so the open track ends (occupancy off) instead of staying on for ever."""
    controls = Controls(snapshots=False)
    out = Recorder()
    engine = EventEngine(filters=ObjectFilter(LabelRule(confirm_frames=3, confirm_score=0.6)))
    events = EventsSink(engine, [out], device_id="cam1", run_id="r", model="m", switches=controls)
    last_sink = ControlSink(controls, T, lambda *_: True)
    for seq in range(5):
        events.handle(moving_person(seq))
        last_sink.handle(moving_person(seq))
    events.handle(moving_person(5))  # saw detection on
    controls.set_detect(False)  # paho's thread, between two sinks of the same frame
    last_sink.handle(moving_person(5))
    assert controls.admit()  # not paused yet: the events sink never saw OFF
    events.handle(moving_person(6))
    last_sink.handle(moving_person(6))
    assert [e["event"] for e in out.events] == ["new", "end"]
    assert not controls.admit()


@pytest.mark.slow
def test_the_pipeline_skips_inference_while_not_admitted(
    asset_models: Path, asset_video: Path
) -> None:
    """The real detector on the asset video; admit() lets one frame in three through."""
    engine = open_engine(ModelSection(name="ssd_mobilenet_v1", models_dir=asset_models, threads=1))
    asked = 0
    lock = threading.Lock()

    def admit() -> bool:
        nonlocal asked
        with lock:
            asked += 1
            return asked % 3 == 0

    with open_source(str(asset_video)) as source:
        pipeline = Pipeline(source, engine, [], config=PipelineSection(), admit=admit)
        summary = pipeline.run(max_frames=20)
    assert summary.processed == 20
    assert summary.frames_in == asked == 60
