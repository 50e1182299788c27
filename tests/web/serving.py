"""The web server in-process on a free loopback port, fed like the pipeline feeds it.

Results carry a real picture (an asset image) and person boxes that walk across it, so the
real tracker (EventEngine) confirms tracks, enters zones and emits events; the server,
encoder, metrics and auth are the real ones.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from edgecam.config.events import EventsSection
from edgecam.config.objects import ObjectsSection
from edgecam.config.tracking import TrackingSection
from edgecam.config.web import WebSection
from edgecam.config.zones import ZoneSection
from edgecam.core.events import EventEngine
from edgecam.sinks.events import EventsSink, build_event_engine
from edgecam.types import Detections, Frame, Result
from edgecam.web.app import serve
from edgecam.web.health import RunInfo
from edgecam.web.server import WebServer
from edgecam.web.sink import WebSink
from tests.support.mosquitto import free_port
from tests.support.paths import ASSETS

LABELS = ("person", "car", "dog")
ZONE = ZoneSection.model_validate(
    {"name": "right", "points": [[0.5, 0.0], [1.0, 0.0], [1.0, 1.0], [0.5, 1.0]]}
)


def picture() -> np.ndarray[Any, np.dtype[np.uint8]]:
    image = cv2.imread(str(ASSETS / "images" / "grace_hopper.png"))
    assert image is not None, f"asset image missing under {ASSETS}"
    return np.ascontiguousarray(image)


def walking_result(seq: int, pixels: np.ndarray[Any, np.dtype[np.uint8]]) -> Result:
    """One person box moving right by 2 % of the frame per frame, plus a still dog."""
    x = 0.05 + (0.02 * seq) % 0.6
    h, w = pixels.shape[:2]
    dets = Detections(
        np.array([[x, 0.3, x + 0.3, 0.95], [0.05, 0.6, 0.25, 0.9]], np.float32),
        np.array([0, 17], np.int32),
        np.array([0.85, 0.7], np.float32),
        ("person", "dog"),
    )
    now = time.time()
    frame = Frame(pixels, seq, now, time.monotonic(), "test", "BGR")
    return Result(
        seq=seq,
        timestamp=now,
        monotonic=time.monotonic(),
        model="ssd_mobilenet_v1",
        width=w,
        height=h,
        output=dets,
        timings_ms={"capture": 1.0, "preprocess": 0.5, "invoke": 20.0, "postprocess": 0.3},
        source="test",
        frame=frame,
    )


@dataclass
class Served:
    server: WebServer
    sink: WebSink
    events: EventsSink
    pixels: np.ndarray[Any, np.dtype[np.uint8]]
    seq: int = 0

    @property
    def port(self) -> int:
        return self.server.port

    def feed(self, n: int = 1) -> None:
        """n results through the events sink then the web sink, as the output thread does."""
        for _ in range(n):
            result = walking_result(self.seq, self.pixels)
            self.events.handle(result)
            self.sink.handle(result)
            self.seq += 1

    def request(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=dict(headers or {}))
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def get_json(self, path: str, headers: Mapping[str, str] | None = None) -> Any:
        status, _, body = self.request("GET", path, headers=headers)
        assert status == 200, f"{path}: {status} {body[:200]!r}"
        return json.loads(body)


def engine() -> EventEngine:
    return build_event_engine(
        TrackingSection.model_validate({}),
        ObjectsSection.model_validate({"confirm_frames": 3, "confirm_score": 0.6}),
        [ZONE],
        EventsSection.model_validate({}),
        id_prefix="run1",
        keep_frames=False,
    )


@contextmanager
def served(**web: Any) -> Iterator[Served]:
    """A started server with the [web] settings `web` on a free loopback port."""
    section = WebSection.model_validate({"enabled": True, "port": free_port(), **web})
    info = RunInfo(
        device_id="cam1",
        run_id="run1",
        model="ssd_mobilenet_v1",
        task="detection",
        labels=LABELS,
        runtime="litert",
        runtime_version="test",
        threads=2,
        source="test",
        events=True,
        version="0.1.0",
    )
    tracker = engine()
    server, sink = serve(
        section, (ZONE,), info, pipeline=lambda: None, mqtt=None, source=None, tracker=tracker
    )
    events = EventsSink(tracker, [sink], device_id="cam1", run_id="run1", model="ssd_mobilenet_v1")
    try:
        yield Served(server, sink, events, picture())
    finally:
        server.stop()
