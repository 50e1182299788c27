"""Feeds detector Results into a real MqttSink from a separate process (for restart/SIGKILL tests).

Stands in for `edgecam run --mqtt` where a test needs exact control of the message count and
rate; test_sink.py runs the real threaded pipeline (model + video) into the sink in-process.
Prints `run_id X`, `open STATE`, `produced N` (after each message), `done N`, `closed DEPTH`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from synthetic import make_result  # type: ignore[import-not-found]  # run as a script

from edgecam.config.mqtt import MqttSection
from edgecam.config.outbox import OutboxSection
from edgecam.sinks.mqtt import open_mqtt_sink


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--outbox", type=Path, required=True)
    ap.add_argument("--device", default="cam1")
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--rate", type=float, default=200.0, help="messages per second")
    ap.add_argument("--max-messages", type=int, default=100_000)
    ap.add_argument("--linger", action="store_true", help="after producing, wait to be killed")
    ap.add_argument("--close-timeout", type=float, default=10.0)
    ap.add_argument("--username")
    ap.add_argument("--password-env")
    ap.add_argument("--ca-file")
    args = ap.parse_args()

    fields: dict[str, object] = {
        "url": args.url,
        "reconnect_min_s": 0.1,
        "reconnect_max_s": 0.5,
        "connect_timeout_s": 3.0,
    }
    if args.username:
        fields.update(username=args.username, password_env=args.password_env, ca_file=args.ca_file)
    cfg = MqttSection.model_validate(fields)
    sink = open_mqtt_sink(
        cfg,
        OutboxSection(path=args.outbox, max_messages=args.max_messages),
        device_id=args.device,
        model="ssd_mobilenet_v1",
        stats_interval_s=0.5,
    )
    print("run_id", sink.run_id, flush=True)
    print("open", sink.state, flush=True)
    period = 1.0 / args.rate if args.rate > 0 else 0.0
    start = time.monotonic()
    for i in range(args.count):
        sink.handle(make_result(i))
        print("produced", i + 1, flush=True)
        delay = start + (i + 1) * period - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    print("done", args.count, flush=True)
    while args.linger:
        time.sleep(1)
    sink.close(args.close_timeout)
    print("closed", sink.outbox_depth, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
