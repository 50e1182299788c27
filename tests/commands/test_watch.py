"""`edgecam watch`, the subscriber side, as a user runs it: a real process against a real broker.

watch connects, subscribes and says so on stderr; the test then publishes (through MqttSink, or
hand-made payloads to exercise gap, duplicate and malformed handling) and reads stdout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import jsonschema
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from edgecam.config.mqtt import validate_mqtt
from edgecam.config.outbox import OutboxSection
from edgecam.core.payload import build_result_payload
from edgecam.schema import json_schema
from edgecam.sinks.mqtt import MqttSink, open_mqtt_sink
from tests.support.mosquitto import PASSWORD, USERNAME, Broker, make_result
from tests.support.mqtt_relay import Relay
from tests.support.paths import REPO

EDGECAM = [sys.executable, "-m", "edgecam"]


class Watch:
    """`edgecam watch ...` in a subprocess; waits for its 'subscribed' line before returning."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [*EDGECAM, "watch", *args],
            cwd=REPO,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline()
        if "subscribed to" not in line:
            self.proc.kill()
            raise AssertionError(f"watch did not subscribe: {line}{self.proc.stderr.read()}")

    def read_until(
        self, stream: IO[str] | None, text: str, count: int, timeout: float
    ) -> list[str]:
        """Lines of `stream` up to the `count`-th one holding `text` (read in a thread, so a
        watch that never prints it fails the test instead of hanging it)."""
        lines: list[str] = []
        assert stream is not None

        def read() -> None:
            while line := stream.readline():
                lines.append(line)
                if sum(text in seen for seen in lines) >= count:
                    return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(timeout)
        if sum(text in line for line in lines) < count:
            raise AssertionError(f"watch never printed {text!r} {count} time(s): {lines}")
        return lines

    def finish(self, timeout: float = 20) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, err


@pytest.fixture
def publisher(broker: Broker) -> Iterator[mqtt.Client]:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
    client.connect(broker.host, broker.port)
    client.loop_start()
    yield client
    client.disconnect()
    client.loop_stop()


@pytest.fixture
def sink_for(tmp_path: Path) -> Iterator[Callable[..., MqttSink]]:
    made: list[MqttSink] = []

    def make(broker: Broker, device: str = "cam1") -> MqttSink:
        cfg = validate_mqtt({"url": broker.url, "publish_counts": False}, "test")
        box = OutboxSection(path=tmp_path / f"{device}.db")
        made.append(open_mqtt_sink(cfg, box, device_id=device, model="ssd_mobilenet_v1"))
        return made[-1]

    yield make
    for sink in made:
        sink.close(2.0)


def send(client: mqtt.Client, topic: str, payload: Any) -> None:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    client.publish(topic, data, qos=1).wait_for_publish(5)


def test_json_lines_are_the_published_payloads(
    broker: Broker, sink_for: Callable[..., MqttSink]
) -> None:
    watch = Watch("--mqtt", broker.url, "--json", "--count", "5", "--timeout", "20")
    sink = sink_for(broker)
    for i in range(5):
        sink.handle(make_result(i, n=2))
    code, out, err = watch.finish()
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    detections = [line for line in lines if line["topic"] == "edgecam/cam1/detections"]
    assert [d["message"]["seq"] for d in detections] == list(range(5))
    for d in detections:
        jsonschema.validate(d["message"], json_schema("detections"))
    assert {"topic": "edgecam/cam1/status", "message": "online"} in lines


def test_table_for_one_device_of_many(broker: Broker, sink_for: Callable[..., MqttSink]) -> None:
    watch = Watch("--mqtt", broker.url, "--device", "cam2", "--count", "3", "--timeout", "20")
    cam1, cam2 = sink_for(broker, "cam1"), sink_for(broker, "cam2")
    for i in range(3):
        cam1.handle(make_result(i, label="car"))
        cam2.handle(make_result(i, label="person"))
    code, out, err = watch.finish()
    assert code == 0, err
    rows = out.splitlines()
    assert rows[0].split()[:5] == ["TIME", "DEVICE", "SEQ", "KIND", "LABEL"]
    data = [r.split() for r in rows[1:] if " detection " in r]
    assert [(r[1], r[2], r[4], r[5]) for r in data] == [
        ("cam2", str(i), "person", "0.80") for i in range(3)
    ]
    assert "cam1" not in out and "car" not in out


def test_gaps_duplicates_and_malformed_are_reported_not_fatal(
    broker: Broker, publisher: mqtt.Client
) -> None:
    watch = Watch("--mqtt", broker.url, "--json", "--count", "3", "--timeout", "20")

    def frame(seq: int) -> dict[str, Any]:
        return build_result_payload(make_result(seq), device_id="cam9", run_id="r1", seq=seq)

    send(publisher, "edgecam/cam9/detections", frame(0))
    send(publisher, "edgecam/cam9/detections", b'{"schema": 1, "type": "detections"}')
    send(publisher, "edgecam/cam9/detections", frame(0))  # QoS 1 redelivery
    send(publisher, "edgecam/cam9/detections", frame(3))  # seq 1 and 2 lost
    code, out, err = watch.finish()
    assert code == 0, err
    assert [json.loads(x)["message"]["seq"] for x in out.splitlines()] == [0, 0, 3]
    assert "skipped a malformed message on edgecam/cam9/detections: device_id:" in err
    assert "duplicate seq 0" in err
    assert "2 message(s) missing before seq 3" in err


def test_hostile_messages_are_skipped_and_the_good_ones_after_them_printed(
    broker: Broker, publisher: mqtt.Client
) -> None:
    """What crashed watch (and any subscriber following docs/mqtt.md) before: deep nesting
    (RecursionError), a 5000-digit count (ValueError), and what wrote raw escape sequences to
    the terminal: a label with ANSI/OSC sequences and a right-to-left override."""
    watch = Watch(
        "--mqtt", broker.url, "--kinds", "detections,count", "--count", "2", "--timeout", "30"
    )
    hostile = {
        "edgecam/cam9/detections": b"[" * 100_000 + b"]" * 100_000,
        "edgecam/cam9/count/person": b"9" * 5000,
        "edgecam/cam9/count/car": "²".encode(),
        "edgecam/cam9/count/dog": b"\xff\xfe",
        "edgecam/cam9/count/cat": b" " * (2 << 20),  # over the 1 MiB payload limit
    }
    for topic, payload in hostile.items():
        send(publisher, topic, payload)
    send(publisher, "edgecam/cam9/detections", b'{"schema": NaN}')
    evil = build_result_payload(
        make_result(0, label="\x1b[2J\x1b]0;pwned\x07person\u202e"),
        device_id="cam9",
        run_id="r1",
        seq=0,
    )
    send(publisher, "edgecam/cam9/detections", evil)
    good = build_result_payload(make_result(1), device_id="cam9", run_id="r1", seq=1)
    send(publisher, "edgecam/cam9/detections", good)
    code, out, err = watch.finish()
    assert code == 0, err
    assert "Traceback" not in err
    rows = [r.split() for r in out.splitlines() if " detection " in r]
    assert [r[2] for r in rows] == ["0", "1"]
    assert rows[1][4] == "person"
    assert "\x1b" not in out and "\u202e" not in out and "\x07" not in out
    assert "\\x1b[2J\\x1b]0;pwned\\x07person\\u202e" in out  # shown, escaped
    assert err.count("edgecam watch: skipped a malformed message on ") == 6
    assert "nested 100000 levels deep" in err and "expected a count like '2'" in err
    assert "skipped 6 malformed message(s) in all" in err


def test_the_nodes_of_a_cluster_in_one_flag_and_a_lost_node_is_left_for_the_next(
    broker: Broker, relays: Callable[..., Relay], sink_for: Callable[..., MqttSink]
) -> None:
    """--mqtt A,B: watch reads through node A; A dies; watch moves to B, subscribes again and
    says so, and goes on printing."""
    a, b = relays(), relays()
    watch = Watch("--mqtt", f"{a.url},{b.url}", "--json", "--count", "6", "--timeout", "30")
    sink = sink_for(broker)
    for i in range(3):
        sink.handle(make_result(i))
    before = watch.read_until(watch.proc.stdout, "/detections", 3, 10)
    a.kill()
    lines = watch.read_until(watch.proc.stderr, "subscribed again", 1, 15)
    assert f"subscribed again on {b.url} (MQTT 5)" in lines[-1]
    assert any(f"connection to {a.url} lost" in line for line in lines)
    for i in range(3, 6):
        sink.handle(make_result(i))
    code, out, err = watch.finish()
    assert code == 0, err
    rows = [json.loads(x) for x in [*before, *out.splitlines()]]
    assert [r["message"]["seq"] for r in rows if r["topic"].endswith("/detections")] == list(
        range(6)
    )


def test_timeout_before_count_is_exit_1(broker: Broker) -> None:
    started = time.monotonic()
    code, _, err = Watch("--mqtt", broker.url, "--count", "1", "--timeout", "0.5").finish()
    assert code == 1 and "0 of 1 messages" in err
    assert time.monotonic() - started < 15


def test_unreachable_broker_is_exit_1() -> None:
    proc = subprocess.run(
        [*EDGECAM, "watch", "--mqtt", "mqtt://127.0.0.1:1", "--timeout", "1"],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "mqtt://127.0.0.1:1: cannot reach the MQTT broker" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_tls_and_password_from_env(tls_broker: Broker, tmp_path: Path) -> None:
    assert tls_broker.tls is not None
    common = [
        "--mqtt",
        f"mqtts://{USERNAME}@localhost:{tls_broker.port}",
        "--ca-file",
        str(tls_broker.tls.ca),
        "--password-env",
        "EDGECAM_TEST_PW",
    ]
    watch = Watch(
        *common, "--json", "--count", "1", "--timeout", "20", env={"EDGECAM_TEST_PW": PASSWORD}
    )
    assert PASSWORD not in " ".join(watch.proc.args)  # type: ignore[arg-type]
    cfg = validate_mqtt(
        {
            "url": tls_broker.url,
            "ca_file": str(tls_broker.tls.ca),
            "username": USERNAME,
            "password_env": "EDGECAM_TEST_PW",
            "publish_counts": False,
        },
        "test",
    )
    os.environ["EDGECAM_TEST_PW"] = PASSWORD
    try:
        sink = open_mqtt_sink(
            cfg, OutboxSection(path=tmp_path / "o.db"), device_id="cam1", model="m"
        )
        sink.handle(make_result(0))
        code, out, err = watch.finish()
        sink.close(2.0)
    finally:
        del os.environ["EDGECAM_TEST_PW"]
    assert code == 0, err
    assert json.loads(out.splitlines()[-1])["message"]["seq"] == 0
    wrong = subprocess.run(
        [*EDGECAM, "watch", *common, "--timeout", "1"],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "EDGECAM_TEST_PW": "wrong"},
    )
    assert wrong.returncode == 1 and "not authorised" in wrong.stderr
