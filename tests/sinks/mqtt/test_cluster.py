"""A fleet of cameras on a real 3-node RabbitMQ cluster; one node SIGKILLed mid-run.

The broker: Debian's rabbitmq-server 3.10 (MQTT 3.1.1 plugin), three nodes on loopback joined
with `rabbitmqctl join_cluster` (tests/support/rabbitmq.py). Each device is the real publishing
code, MqttSink and its outbox, in its own thread, replaying detection results the real model
recorded from the asset video, at the video's 10 frames/s, detections-only (the default).
Every device lists the three nodes, its home node first, so the fleet is spread over nodes 3,
2 and 1, and connects with mqtt.protocol = "auto": the plugin cannot read an MQTT 5 CONNECT,
so each falls back to 3.1.1. A consumer reads everything with a persistent session (QoS 1,
clean session off) on node 1; its queue lives on node 1, which is never killed: a PUBACK
means "accepted by every live queue", so messages routed to a queue on a dead node are lost
(see docs/mqtt.md). `edgecam watch` follows the fleet through node 3 first.

Node 3 is SIGKILLed a third of the way in and restarted two thirds in. Asserted: every seq of
every device arrived at least once (duplicates are counted and printed); every device of node
3 moved to another node with one connection attempt, within the first backoff step plus one
connection timeout; watch moved and went on; doctor saw 2 of 3 nodes while node 3 was down;
a device started after the restart uses node 3 again.

Devices on nodes 1 and 2 may lose their connection too, and are not asserted to keep it:
RabbitMQ 3.10 closes a publisher's connection when a queue that its unconfirmed message was
routed to dies (`{mqtt_unexpected_msg, {'basic.nack', ...}}` in the node's log); here that is
watch's queue, which lives on node 3. They reconnect and re-send like the others.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from edgecam.cli import main
from edgecam.config.model import ModelSection
from edgecam.config.mqtt import MqttSection, validate_mqtt
from edgecam.config.outbox import OutboxSection
from edgecam.config.pipeline import PipelineSection
from edgecam.doctor.checks import Check
from edgecam.doctor.devices import check_mqtt
from edgecam.errors import SinkError
from edgecam.pipeline.engine import open_engine
from edgecam.pipeline.pipeline import Pipeline
from edgecam.schema import PayloadError, parse_detections
from edgecam.sinks.mqtt import open_mqtt_sink
from edgecam.sinks.mqtt_nodes import NO_CONNACK
from edgecam.sources import open_source
from edgecam.types import Result
from tests.support.paths import REPO
from tests.support.rabbitmq import RABBITMQ_BIN, RabbitCluster, RabbitClusterError

RATE = 10.0  # frames per second: the asset video's rate
DURATION_S = 36.0
KILL_AT_S, RESTART_AT_S = 12.0, 24.0
#: device -> the nodes its mqtt.url lists, home first: node 3's devices go on to 1 or 2.
FLEET = {
    **{f"cam-n3{x}": (3, 1, 2) if i % 2 else (3, 2, 1) for i, x in enumerate("abcde")},
    **{f"cam-n2{x}": (2, 3, 1) if i % 2 else (2, 1, 3) for i, x in enumerate("abcde")},
    **{f"cam-n1{x}": (1, 2, 3) for x in "ab"},
}
RECORDED_FRAMES = 150
SETTINGS = {"reconnect_min_s": 0.5, "reconnect_max_s": 30.0, "connect_timeout_s": 5.0}

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitCluster]:
    if not (RABBITMQ_BIN / "rabbitmq-server").exists() or shutil.which("epmd") is None:
        pytest.fail(
            "rabbitmq-server is not installed: run `python3 -m tests.support.rabbitmq install`"
            " as root (.ci/run does)",
            pytrace=False,
        )
    rabbit = RabbitCluster(tmp_path_factory.mktemp("rabbit"), boot_timeout=120)
    try:
        rabbit.start()
    except RabbitClusterError as exc:
        rabbit.stop()
        pytest.fail(f"the 3-node RabbitMQ cluster did not start: {exc}", pytrace=False)
    print(f"\ncluster start: {rabbit.start_seconds:.1f} s")
    yield rabbit
    rabbit.stop()


@pytest.fixture(scope="module")
def recorded(asset_models: Path, asset_video: Path) -> list[Result]:
    """Results of the real model on the first RECORDED_FRAMES frames of the asset video."""
    engine = open_engine(ModelSection(name="ssd_mobilenet_v1", models_dir=asset_models))
    source = open_source(str(asset_video))
    out: list[Result] = []

    class Recorder:
        def handle(self, result: Result) -> None:
            out.append(dataclasses.replace(result, frame=None))

        def close(self, timeout: float) -> None:
            pass

    Pipeline(source, engine, [Recorder()], config=PipelineSection()).run(max_frames=RECORDED_FRAMES)
    source.close()
    assert len(out) == RECORDED_FRAMES and any(len(r.output) for r in out)
    return out


@pytest.fixture
def run_env(monkeypatch: pytest.MonkeyPatch, asset_models: Path, tmp_path: Path) -> Path:
    monkeypatch.setenv("EDGECAM_MODELS_DIR", str(asset_models))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path


def urls(cluster: RabbitCluster, *order: int) -> list[str]:
    return [f"mqtt://127.0.0.1:{cluster.mqtt_port(i)}" for i in order]


def device_cfg(cluster: RabbitCluster, order: tuple[int, ...]) -> MqttSection:
    table = {"url": urls(cluster, *order), "publish_counts": False, **SETTINGS}
    return validate_mqtt(table, "test")


class Consumer:
    """Persistent session on one node: clean session off, QoS 1, a fixed client id."""

    def __init__(self, port: int, client_id: str) -> None:
        self.seen: dict[str, list[int]] = {}
        self.bytes = 0
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=False,
            protocol=MQTTProtocolVersion.MQTTv311,
        )
        self.client.reconnect_delay_set(1, 1)
        self.client.on_connect = lambda c, *_: c.subscribe("edgecam/+/detections", qos=1)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            message = parse_detections(bytes(msg.payload))
        except PayloadError:
            return
        with self._lock:
            self.seen.setdefault(message.device_id, []).append(message.seq)
            self.bytes += len(msg.payload)

    @property
    def received(self) -> int:
        with self._lock:
            return sum(len(seqs) for seqs in self.seen.values())

    def missing(self, expected: dict[str, int]) -> dict[str, int]:
        with self._lock:
            return {
                d: n - len(set(self.seen.get(d, [])) & set(range(n)))
                for d, n in expected.items()
                if set(range(n)) - set(self.seen.get(d, []))
            }

    def wait_complete(self, expected: dict[str, int], timeout: float) -> dict[str, int]:
        deadline = time.monotonic() + timeout
        while (missing := self.missing(expected)) and time.monotonic() < deadline:
            time.sleep(0.2)
        return missing

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Device(threading.Thread):
    """One camera: its own MqttSink and outbox, replaying `recorded` at RATE frames/s."""

    def __init__(
        self, name: str, cfg: MqttSection, outbox: Path, recorded: list[Result], duration: float
    ) -> None:
        super().__init__(name=f"device-{name}", daemon=True)
        self.device = name
        self.recorded = recorded
        self.sink = open_mqtt_sink(
            cfg, OutboxSection(path=outbox), device_id=name, model="ssd_mobilenet_v1"
        )
        self.ports = {e.port: i for i, e in enumerate(cfg.endpoints())}
        self.acks: list[tuple[float, int]] = []  # (monotonic time, port of the node) per PUBACK
        self.produced = 0  # detections messages: seq 0 .. produced-1
        self.duration = duration
        original = self.sink.client.on_publish
        assert original is not None

        def on_publish(*args: Any) -> None:
            self.acks.append((time.monotonic(), self.sink.link.endpoint.port))
            original(*args)

        self.sink.client.on_publish = on_publish

    def run(self) -> None:
        start, frames = time.monotonic(), int(self.duration * RATE)
        offset = sum(map(ord, self.device)) % len(self.recorded)  # devices see different frames
        for i in range(frames):
            source = self.recorded[(offset + i) % len(self.recorded)]
            now = time.time()
            self.sink.handle(
                dataclasses.replace(source, seq=i, timestamp=now, monotonic=time.monotonic())
            )
            self.produced += len(source.output) > 0
            time.sleep(max(0.0, start + (i + 1) / RATE - time.monotonic()))


def failover(device: Device, killed_port: int, killed_at: float) -> tuple[float, float, int]:
    """(last PUBACK on the killed node -> first on another, kill -> that PUBACK, its port)."""
    before = [t for t, port in device.acks if port == killed_port and t <= killed_at + 1.0]
    after = [(t, port) for t, port in device.acks if port != killed_port and t > killed_at]
    assert before and after, f"{device.device}: PUBACKs before {len(before)}, after {len(after)}"
    first, port = after[0]
    return first - before[-1], first - killed_at, port


def sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.monotonic()))


class Watch:
    """`edgecam watch --mqtt N3,N1,N2 --json` in a subprocess, output in files."""

    def __init__(self, cluster: RabbitCluster, folder: Path) -> None:
        self.out, self.err = folder / "watch.out", folder / "watch.err"
        nodes = ",".join(urls(cluster, 3, 1, 2))
        with self.out.open("wb") as out, self.err.open("wb") as err:
            args = ["watch", "--mqtt", nodes, "--json", "--kinds", "detections", "--timeout", "170"]
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "edgecam", *args],
                cwd=REPO,
                env={**os.environ, "PYTHONPATH": str(REPO)},
                stdout=out,
                stderr=err,
            )
        deadline = time.monotonic() + 30
        while "subscribed to" not in self.err.read_text():
            assert self.proc.poll() is None and time.monotonic() < deadline, self.err.read_text()
            time.sleep(0.1)

    def stop(self) -> tuple[str, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.out.read_text(), self.err.read_text()


@dataclasses.dataclass
class Outage:
    """Node 3's SIGKILL and restart, and what the fleet and doctor saw around them."""

    killed_port: int
    attempts: dict[str, int]  # connection attempts per device just before the kill
    killed_at: float = 0.0  # monotonic
    killed_wall: float = 0.0  # epoch seconds, to compare with captured_ms
    kill_s: float = 0.0
    restart_s: float = 0.0
    doctor_down: Check | None = None
    doctor_up: Check | None = None
    steady: tuple[float, float, int] = (0.0, 0.0, 0)  # seconds, broker CPU s, messages


def beam_cpu_s(cluster: RabbitCluster) -> float:
    """CPU time (user + system) the three nodes' Erlang VMs have used so far."""
    total = 0
    for node in cluster.nodes:
        pid = node.beam_pid()
        if pid is not None:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def kill_and_restart(
    cluster: RabbitCluster, devices: list[Device], consumer: Consumer, began: float
) -> Outage:
    """Node 3 SIGKILLed at KILL_AT_S, restarted at RESTART_AT_S; before that, the brokers' CPU
    per message in steady state, from 2 s in to the kill."""
    nodes = device_cfg(cluster, (1, 2, 3))
    sleep_until(began + 2.0)
    cpu, received, steady_from = beam_cpu_s(cluster), consumer.received, time.monotonic()
    sleep_until(began + KILL_AT_S)
    outage = Outage(cluster.mqtt_port(3), {d.device: d.sink.link.attempts for d in devices})
    outage.steady = (
        time.monotonic() - steady_from,
        beam_cpu_s(cluster) - cpu,
        consumer.received - received,
    )
    outage.killed_at, outage.killed_wall = time.monotonic(), time.time()
    cluster.kill(3)
    outage.kill_s = time.monotonic() - outage.killed_at
    outage.doctor_down = check_mqtt(nodes)
    sleep_until(began + RESTART_AT_S)
    restarted_at = time.monotonic()
    cluster.restart(3)
    outage.restart_s = time.monotonic() - restarted_at
    outage.doctor_up = check_mqtt(nodes)
    return outage


def test_a_fleet_loses_nothing_when_a_node_dies(
    cluster: RabbitCluster, recorded: list[Result], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="edgecam.sinks.mqtt_nodes")
    with contextlib.ExitStack() as stack:
        consumer = Consumer(cluster.mqtt_port(1), "fleet-consumer")
        stack.callback(consumer.close)
        watch = Watch(cluster, tmp_path)
        stack.callback(watch.stop)
        devices = [
            Device(name, device_cfg(cluster, order), tmp_path / f"{name}.db", recorded, DURATION_S)
            for name, order in FLEET.items()
        ]
        for device in devices:
            stack.callback(device.sink.close, 1.0)  # a no-op after the close below
        began = time.monotonic()
        for device in devices:
            device.start()
        outage = kill_and_restart(cluster, devices, consumer, began)
        late = Device("cam-late3", device_cfg(cluster, (3, 1, 2)), tmp_path / "l.db", recorded, 3)
        late.start()
        for device in [*devices, late]:
            device.join(DURATION_S + 30)
            device.sink.close(10.0)
        wall = time.monotonic() - began
        expected = {d.device: d.produced for d in [*devices, late]}
        missing = consumer.wait_complete(expected, 60)
        watch_out, watch_err = watch.stop()
    report(devices, consumer, expected, outage, wall)

    assert missing == {}, f"messages never delivered, per device: {missing}"
    for device in [*devices, late]:
        assert (device.sink.dropped, device.sink.outbox_depth) == (0, 0), device.device
        assert device.sink.link.protocol == "3.1.1"
        assert device.sink.link.v5_refusal == NO_CONNACK  # "auto": refused, said in the log
    assert "does not speak MQTT 5" in caplog.text
    check_failover(devices, outage)
    assert late.acks and {p for _, p in late.acks} == {outage.killed_port}  # node 3 serves again
    check_doctor_and_watch(cluster, outage, watch_out, watch_err, {d.device for d in devices})


def check_doctor_and_watch(
    cluster: RabbitCluster, outage: Outage, watch_out: str, watch_err: str, fleet: set[str]
) -> None:
    down, up = outage.doctor_down, outage.doctor_up
    assert down is not None and up is not None
    assert down.status == "warn" and down.detail.startswith("2 of 3 nodes"), down
    assert f"127.0.0.1:{outage.killed_port}: cannot reach" in down.detail
    assert up.status == "ok" and up.detail.startswith("3 of 3 nodes"), up
    live = [f"subscribed again on mqtt://127.0.0.1:{cluster.mqtt_port(i)}" for i in (1, 2)]
    assert any(text in watch_err for text in live), watch_err  # node 1 next, else node 2
    watched = [json.loads(line)["message"] for line in watch_out.splitlines()]
    late = (outage.killed_wall + 2) * 1000
    after = {m["device_id"] for m in watched if m["captured_ms"] > late}
    assert after >= fleet, after  # the whole fleet, after watch moved


def check_failover(devices: list[Device], outage: Outage) -> None:
    """Node 3's devices: one attempt, to a live node, within the first backoff step (at most
    2 x reconnect_min_s) plus one connection timeout."""
    bound = 2 * SETTINGS["reconnect_min_s"] + SETTINGS["connect_timeout_s"]
    for device in devices:
        link = device.sink.link
        if FLEET[device.device][0] != 3:
            continue
        gap, _, port = failover(device, outage.killed_port, outage.killed_at)
        assert port != outage.killed_port and gap <= bound, (device.device, gap, port)
        assert link.attempts - outage.attempts[device.device] == 1, device.device
        assert (device.sink.reconnects, link.failovers) == (1, 1), device.device


def report(
    devices: list[Device], consumer: Consumer, expected: dict[str, int], outage: Outage, wall: float
) -> None:
    """The closing note's numbers, printed (pytest -s shows them)."""
    total = sum(expected.values())
    received = sum(len(v) for v in consumer.seen.values())
    print(f"\nfleet: {len(expected)} devices x {total / len(expected):.0f} messages = {total}")
    print(f"received {received}, duplicates {received - total}, run {wall:.1f} s")
    print(f"aggregate {total / wall:.1f} msg/s, {consumer.bytes / wall / 1024:.1f} KiB/s")
    kill_ms, restart_s = outage.kill_s * 1000, outage.restart_s
    print(f"SIGKILL of node 3: {kill_ms:.0f} ms; restart + rejoin {restart_s:.1f} s")
    seconds, cpu, messages = outage.steady
    print(
        f"steady state, 3 nodes: {messages / seconds:.0f} msg/s, broker CPU {cpu / seconds:.0%}"
        f" of a core, {cpu / max(1, messages) * 1000:.2f} ms per message"
    )
    others = [d.device for d in devices if FLEET[d.device][0] != 3 and d.sink.reconnects]
    print(f"devices of nodes 1-2 that lost their connection too (basic.nack): {others}")
    for device in devices:
        if FLEET[device.device][0] == 3:
            gap, since_kill, port = failover(device, outage.killed_port, outage.killed_at)
            print(
                f"  {device.device}: last PUBACK on node 3 -> first on :{port}"
                f" {gap * 1000:.0f} ms (kill -> it {since_kill * 1000:.0f} ms)"
            )


def test_run_on_the_cluster_falls_back_to_311_and_publishes(
    cluster: RabbitCluster,
    run_env: Path,
    asset_video: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """What the issue saw fail: `edgecam run --mqtt` against RabbitMQ exited 1 with a wrong
    hint. With the node list and "auto" it runs, on the real model and video."""
    consumer = Consumer(cluster.mqtt_port(1), "run-consumer")
    video = asset_video
    nodes = ",".join(urls(cluster, 2, 3, 1))
    args = ["run", "--model", "ssd_mobilenet_v1", "--source", str(video), "--max-frames", "60"]
    rc = main([*args, "--mqtt", nodes, "--device-id", "cam-run", "--sink", "none"])
    err = capsys.readouterr().err
    assert rc == 0, err
    seqs = consumer.seen.get("cam-run", [])
    assert consumer.wait_complete({"cam-run": max(seqs, default=-1) + 1}, 10) == {}
    consumer.close()
    assert seqs and "does not speak MQTT 5" in err and "Traceback" not in err


def test_protocol_5_on_rabbitmq_is_refused_with_the_right_hint(
    cluster: RabbitCluster, tmp_path: Path
) -> None:
    cfg = validate_mqtt({"url": urls(cluster, 1), "protocol": "5", **SETTINGS}, "test")
    with pytest.raises(
        SinkError, match=r"closed the connection before accepting it \(MQTT 5\)"
    ) as info:
        open_mqtt_sink(cfg, OutboxSection(path=tmp_path / "o.db"), device_id="c", model="m")
    assert info.value.hint is not None and "speaks only MQTT 3.1.1" in info.value.hint
