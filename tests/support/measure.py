"""Measure the MQTT path on this machine (not a test: numbers for the docs and the issue).

    EDGECAM_ASSETS=/work/shared/assets PYTHONPATH=. .venv/bin/python tests/support/measure.py

Prints, against a real Mosquitto on loopback:
- outbox write rate (append + commit per message) and drain rate (outbox -> broker -> PUBACK
  -> delete, QoS 1); MqttSink.handle() cost per frame, in a tight loop and paced at 30 fps;
- for broker sizing, what one camera sends: the real model runs once over the whole asset
  video, then its results go through the real sink (and the event engine at its defaults) in
  three modes: detections-only (the default), every frame, events only
  (mqtt.publish_detections = false); as messages and payload bytes per second of video;
- the process CPU time per message while publishing detections at the video's frame rate
  (payload, outbox commit, publisher thread, paho), i.e. the publish cost on the device.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from edgecam.config import load_config
from edgecam.config.model import ModelSection
from edgecam.config.mqtt import validate_mqtt
from edgecam.config.outbox import OutboxSection
from edgecam.config.pipeline import PipelineSection
from edgecam.core.payload import build_result_payload
from edgecam.pipeline.engine import open_engine
from edgecam.pipeline.pipeline import Pipeline
from edgecam.sinks.base import Sink
from edgecam.sinks.events import EventsSink, build_event_engine
from edgecam.sinks.mqtt import open_mqtt_sink
from edgecam.sinks.outbox import Outbox
from edgecam.sources import open_source
from edgecam.types import Result
from tests.support.mosquitto import Broker, Collector
from tests.support.paths import ASSETS
from tests.support.synthetic import make_result

N = 5000
stats_sizes: list[int] = []  # payload sizes of the stats messages seen
VIDEO = ASSETS / "video" / "one-by-one-person-detection.mp4"
MODES = {
    "detections-only (default)": {},
    "every frame": {"publish_empty_frames": True},
    "events only": {"publish_detections": False, "publish_counts": False},
}


def payload_bytes() -> bytes:
    result = make_result(0, n=2)
    return json.dumps(build_result_payload(result, device_id="cam1", run_id="r", seq=0)).encode()


def outbox_write_rate(tmp: Path) -> float:
    box = Outbox(tmp / "write.db", max_messages=10 * N, max_bytes=1 << 30)
    data = payload_bytes()
    start = time.perf_counter()
    for _ in range(N):
        box.append("edgecam/cam1/detections", data, 1, False)
    rate = N / (time.perf_counter() - start)
    box.close()
    return rate


def drain_rate(tmp: Path, broker: Broker) -> float:
    """Fill the outbox as a broker outage would, then time the delivery of all of it."""
    path = tmp / "drain.db"
    box = Outbox(path, max_messages=10 * N, max_bytes=1 << 30)
    data = payload_bytes()
    for _ in range(N):
        box.append("edgecam/cam1/detections", data, 1, False)
    box.close()
    cfg = validate_mqtt({"url": broker.url, "publish_counts": False}, "measure")
    start = time.perf_counter()
    sink = open_mqtt_sink(cfg, OutboxSection(path=path), device_id="cam1", model="m")
    while sink.outbox_depth and time.perf_counter() - start < 120:
        time.sleep(0.005)
    rate = N / (time.perf_counter() - start)
    sink.close(5)
    return rate


def handle_cost_us(tmp: Path, broker: Broker, fps: float) -> tuple[float, float]:
    cfg = validate_mqtt({"url": broker.url}, "measure")
    sink = open_mqtt_sink(cfg, OutboxSection(path=tmp / f"h{fps}.db"), device_id="cam1", model="m")
    frames = 300 if fps else 3000
    results = [make_result(i, n=2) for i in range(frames)]
    costs = []
    for result in results:
        start = time.perf_counter()
        sink.handle(result)
        costs.append((time.perf_counter() - start) * 1e6)
        if fps:
            time.sleep(1 / fps)
    sink.close(10)
    costs.sort()
    return statistics.median(costs), costs[int(len(costs) * 0.95)]


def record_video() -> tuple[list[Result], float]:
    """Every frame of the asset video through the real model; (results, seconds of video)."""
    capture = cv2.VideoCapture(str(VIDEO))
    fps = capture.get(cv2.CAP_PROP_FPS)
    capture.release()
    engine = open_engine(ModelSection(name="ssd_mobilenet_v1", models_dir=ASSETS / "models"))
    source = open_source(str(VIDEO))
    results: list[Result] = []

    class Recorder:
        def handle(self, result: Result) -> None:
            results.append(dataclasses.replace(result, frame=None))

        def close(self, timeout: float) -> None:
            pass

    Pipeline(source, engine, [Recorder()], config=PipelineSection()).run()
    source.close()
    return results, len(results) / fps


def one_camera(tmp: Path, broker: Broker, results: list[Result], mode: str) -> Counter[str]:
    """Messages and payload bytes per topic kind that one camera sends in `mode`."""
    number = list(MODES).index(mode)
    col = Collector(broker, ("edgecam/cam1/#",), client_id=f"measure-{number}", persistent=False)
    table = {"url": broker.url, **MODES[mode]}
    sink = open_mqtt_sink(
        validate_mqtt(table, "measure"),
        OutboxSection(path=tmp / f"mode{number}.db"),
        device_id="cam1",
        model="ssd_mobilenet_v1",
        stats_interval_s=3600,
    )
    outputs: list[Sink] = [sink]
    if mode == "events only":
        defaults = load_config(None)
        engine = build_event_engine(
            defaults.tracking, defaults.objects, defaults.zones, defaults.events, keep_frames=False
        )
        outputs = [EventsSink(engine, [sink], device_id="cam1", run_id="r", model="m"), sink]
    for result in results:
        for output in outputs:
            output.handle(result)
    for output in outputs:
        output.close(30)
    time.sleep(1.0)
    col.close()
    counts: Counter[str] = Counter()
    for message in col.messages:
        kind = message.topic.split("/")[2]
        if kind not in ("status", "stats"):  # per connection and per stats.interval_s
            counts[kind] += 1
            counts[f"{kind} bytes"] += len(message.payload)
        elif kind == "stats":
            stats_sizes.append(len(message.payload))
    return counts


def publish_cpu_per_message(tmp: Path, broker: Broker, results: list[Result], fps: float) -> float:
    """Process CPU time per detections message, publishing at the video's rate for 20 s."""
    cfg = validate_mqtt({"url": broker.url}, "measure")
    sink = open_mqtt_sink(cfg, OutboxSection(path=tmp / "cpu.db"), device_id="cam1", model="m")
    frames = results[: int(20 * fps)]
    time.sleep(1.0)
    idle_start = time.process_time()
    time.sleep(5.0)
    idle_per_s = (time.process_time() - idle_start) / 5.0
    began, cpu0 = time.monotonic(), time.process_time()
    for i, result in enumerate(frames):
        sink.handle(dataclasses.replace(result, timestamp=time.time(), monotonic=time.monotonic()))
        time.sleep(max(0.0, began + (i + 1) / fps - time.monotonic()))
    while sink.outbox_depth:
        time.sleep(0.01)
    cpu = time.process_time() - cpu0 - idle_per_s * (time.monotonic() - began)
    sink.close(5)
    return cpu / max(1, sink.acked)


def scale(tmp: Path, broker: Broker) -> None:
    results, seconds = record_video()
    fps = len(results) / seconds
    print(f"asset video: {len(results)} frames, {seconds:.1f} s at {fps:.1f} fps")
    for mode in MODES:
        counts = one_camera(tmp, broker, results, mode)
        kinds = sorted(k for k in counts if not k.endswith(" bytes"))
        total = sum(counts[k] for k in kinds)
        size = sum(counts[f"{k} bytes"] for k in kinds)
        detail = ", ".join(f"{k} {counts[k] / seconds:.2f}/s" for k in kinds)
        print(
            f"{mode}: {total / seconds:.2f} msg/s, {size / seconds:,.0f} payload bytes/s"
            f" ({detail}); {size / max(1, total):.0f} bytes/message"
        )
    print(f"plus stats: one per stats.interval_s (10 s), {max(stats_sizes)} bytes")
    per_message = publish_cpu_per_message(tmp, broker, results, fps)
    print(
        f"publish cost on the device: {per_message * 1e3:.2f} ms CPU per message at {fps:.0f} fps"
    )


def main() -> None:
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        (tmp / "broker").mkdir()
        broker = Broker(tmp / "broker")
        broker.start()
        try:
            if "--scale" not in sys.argv:
                print(f"payload size: {len(payload_bytes())} bytes (2 detections)")
                print(f"outbox write: {outbox_write_rate(tmp):,.0f} msg/s (one commit each)")
                print(f"outbox drain to mosquitto, QoS 1: {drain_rate(tmp, broker):,.0f} msg/s")
                for fps in (0.0, 30.0):
                    p50, p95 = handle_cost_us(tmp, broker, fps)
                    pace = f"{fps:.0f} fps" if fps else "tight loop"
                    print(
                        f"handle() per frame, connected, {pace}: p50 {p50:.0f} us, p95 {p95:.0f} us"
                    )
            scale(tmp, broker)
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
