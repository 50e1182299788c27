"""A real Mosquitto for the MQTT tests: plain TCP, and TLS + password with a CA made by openssl.

Each broker runs in the foreground on a free loopback port with a generated config
(`user root` so it can read root-owned key/password files). `stop()` / `start()` reuse the
SAME port and persistence file, so clients see a broker restart, not a new broker. A missing
mosquitto or openssl binary FAILS the run: a green CI that skipped these would prove nothing.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.support.paths import REPO
from tests.support.synthetic import make_classification, make_result

PRODUCER = Path(__file__).with_name("producer.py")
__all__ = ["make_classification", "make_result"]
PASSWORD = "s3cret-Pa55word-never-logged"
USERNAME = "camera1"


def _binary(name: str) -> str:
    found = shutil.which(name) or next(
        (str(p) for p in (Path("/usr/sbin") / name, Path("/usr/bin") / name) if p.exists()), None
    )
    if not found:
        pytest.fail(
            f"{name} not found: install it (apt-get install mosquitto mosquitto-clients openssl)",
            pytrace=False,
        )
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class TlsFiles:
    ca: Path
    cert: Path
    key: Path
    other_ca: Path  # a CA that did NOT sign the broker certificate
    passwd: Path


class Broker:
    """One mosquitto process; `stop()` and `start()` keep port, config and persistence."""

    def __init__(
        self, workdir: Path, *, tls: TlsFiles | None = None, port: int | None = None
    ) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.tls = tls
        self.proc: subprocess.Popen[bytes] | None = None
        self.conf = workdir / "mosquitto.conf"
        lines = [
            "user root",
            f"listener {self.port} 127.0.0.1",
            "persistence true",
            f"persistence_location {workdir}/",
            "max_queued_messages 100000",
            f"log_dest file {workdir}/mosquitto.log",
            "log_type all",
        ]
        if tls:
            lines += [
                f"cafile {tls.ca}",
                f"certfile {tls.cert}",
                f"keyfile {tls.key}",
                "allow_anonymous false",
                f"password_file {tls.passwd}",
            ]
        else:
            lines.append("allow_anonymous true")
        self.conf.write_text("\n".join(lines) + "\n")

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        assert self.proc is None, "already running"
        self.proc = subprocess.Popen(
            [_binary("mosquitto"), "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                log = (self.workdir / "mosquitto.log").read_text(errors="replace")[-2000:]
                self.proc = None
                pytest.fail(f"mosquitto exited at start: {err}\n{log}", pytrace=False)
            try:
                socket.create_connection((self.host, self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        pytest.fail(f"mosquitto did not listen on {self.port} within {timeout} s", pytrace=False)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()  # SIGTERM: mosquitto saves its persistence file and exits
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        if self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None

    def log_text(self) -> str:
        path = self.workdir / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """Plain TCP, anonymous allowed."""
    (tmp_path / "broker").mkdir()
    b = Broker(tmp_path / "broker")
    b.start()
    yield b
    b.stop()


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(
        [_binary("openssl"), *args], cwd=cwd, check=True, capture_output=True, timeout=60
    )


def _make_ca(cwd: Path, name: str) -> None:
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "2",
        "-subj",
        f"/CN=edgecam test {name}",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.crt",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        cwd=cwd,
    )


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A self-signed CA, a broker certificate it signed (localhost + 127.0.0.1), a password file."""
    d = tmp_path_factory.mktemp("tls")
    _make_ca(d, "ca")
    _make_ca(d, "other-ca")
    _openssl(
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        cwd=d,
    )
    (d / "ext.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-out",
        "server.crt",
        "-extfile",
        "ext.cnf",
        cwd=d,
    )
    passwd = d / "passwd"
    passwd.touch(mode=0o600)
    subprocess.run(
        [_binary("mosquitto_passwd"), "-b", str(passwd), USERNAME, PASSWORD],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return TlsFiles(d / "ca.crt", d / "server.crt", d / "server.key", d / "other-ca.crt", passwd)


@pytest.fixture
def tls_broker(tmp_path: Path, tls_files: TlsFiles) -> Iterator[Broker]:
    """TLS with a certificate from our own CA; anonymous refused; user camera1 / PASSWORD."""
    (tmp_path / "tls-broker").mkdir()
    b = Broker(tmp_path / "tls-broker", tls=tls_files)
    b.start()
    yield b
    b.stop()


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool


@dataclass
class Collector:
    """Records everything; a persistent session, so nothing sent while it was away is lost."""

    broker: Broker
    topics: tuple[str, ...]
    client_id: str = "edgecam-test-collector"
    persistent: bool = True
    username: str | None = None
    password: str | None = None
    messages: list[Received] = field(default_factory=list)
    connects: int = 0
    subacks: int = 0

    def __post_init__(self) -> None:
        self._cond = threading.Condition()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self.client.reconnect_delay_set(0.1, 0.2)  # type: ignore[arg-type]
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        if self.broker.tls:
            self.client.tls_set(ca_certs=str(self.broker.tls.ca))
        if self.username:
            self.client.username_pw_set(self.username, self.password)
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 600 if self.persistent else 0
        self.client.connect(
            self.broker.host, self.broker.port, clean_start=not self.persistent, properties=props
        )
        self.client.loop_start()
        assert self.wait_for(lambda: self.connects > 0, 5), "collector could not connect"
        # Subscribed means SUBACKed: a message published by another client before that may
        # reach the broker first and never come here.
        want = len(self.topics)
        assert self.wait_for(lambda: self.subacks >= want, 5), "collector not subscribed"

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if not reason.is_failure:
            for topic in self.topics:
                client.subscribe(topic, qos=1)
            with self._cond:
                self.connects += 1
                self._cond.notify_all()

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _mid: int, _codes: Any, _p: Any) -> None:
        with self._cond:
            self.subacks += 1
            self._cond.notify_all()

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages.append(Received(msg.topic, bytes(msg.payload), bool(msg.retain)))
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[], object], timeout: float) -> bool:
        with self._cond:
            return bool(self._cond.wait_for(predicate, timeout))

    def on(self, suffix: str) -> list[Received]:
        with self._cond:
            return [m for m in self.messages if m.topic.endswith(suffix)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def collector_factory() -> Iterator[Callable[..., Collector]]:
    made: list[Collector] = []

    def make(broker: Broker, *topics: str, **kwargs: Any) -> Collector:
        c = Collector(broker, tuple(topics), **kwargs)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def subscribed_before_start(
    broker: Broker, collector_factory: Callable[..., Collector], topic: str
) -> Collector:
    """A persistent subscription made before edgecam can reach `broker`, which is left stopped.

    The broker keeps the session across its restart, so whatever edgecam publishes the moment
    it connects is queued for the collector: nothing races the subscription.
    """
    broker.start()
    col = collector_factory(broker, topic)  # returns once SUBACKed
    broker.stop()
    return col


class Producer:
    """tests/mqtt/producer.py in a subprocess: a real process to stop, restart and SIGKILL."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, str(PRODUCER), *args],
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.strip())
                self._cond.notify_all()

    def wait_line(self, prefix: str, timeout: float) -> str:
        with self._cond:
            ok = self._cond.wait_for(lambda: any(x.startswith(prefix) for x in self.lines), timeout)
        if not ok:
            raise AssertionError(
                f"producer never printed {prefix!r}; got {self.lines[-5:]}, "
                f"stderr: {self.stderr_text()}"
            )
        return next(x for x in self.lines if x.startswith(prefix))

    def stderr_text(self) -> str:
        if self.proc.poll() is None or self.proc.stderr is None:
            return "(running)"
        return self.proc.stderr.read()

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
