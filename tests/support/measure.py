"""Measure the MQTT path on this machine (not a test: numbers for the docs and the issue).

    PYTHONPATH=. .venv/bin/python tests/support/measure.py

Prints: outbox write rate (append + commit per message), drain rate (outbox -> real Mosquitto
-> PUBACK -> delete, QoS 1), and MqttSink.handle() cost per frame while connected, both in a
tight loop and paced at 30 frames/s (the realistic case: caches go cold between frames).
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from mqtt.conftest import Broker  # type: ignore[import-not-found]  # run as a script
from mqtt.synthetic import make_result  # type: ignore[import-not-found]

from edgecam.config.mqtt import validate_mqtt
from edgecam.config.outbox import OutboxSection
from edgecam.core.payload import build_result_payload
from edgecam.sinks.mqtt import open_mqtt_sink
from edgecam.sinks.outbox import Outbox

N = 5000


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


def main() -> None:
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        (tmp / "broker").mkdir()
        broker = Broker(tmp / "broker")
        broker.start()
        try:
            print(f"payload size: {len(payload_bytes())} bytes (2 detections)")
            print(f"outbox write: {outbox_write_rate(tmp):,.0f} msg/s (one commit each)")
            print(f"outbox drain to mosquitto, QoS 1: {drain_rate(tmp, broker):,.0f} msg/s")
            for fps in (0.0, 30.0):
                p50, p95 = handle_cost_us(tmp, broker, fps)
                pace = f"{fps:.0f} fps" if fps else "tight loop"
                print(f"handle() per frame, connected, {pace}: p50 {p50:.0f} us, p95 {p95:.0f} us")
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
