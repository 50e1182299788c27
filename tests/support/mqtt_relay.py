"""A loopback TCP relay in front of a real Mosquitto: one more "node" of the same broker.

Two relays in front of one Mosquitto behave like two nodes of a cluster that share their state
(what one accepts, subscribers of the other see), and `kill()` ends a relay as SIGKILL ends a
node: its listener and every connection through it close at once (RST), bytes in transit are
lost, nothing is PUBACKed for them. `start()` brings it back on the same port. `drop = "all"`
swallows what clients send, as a node that stopped working before it died: messages then wait
in the client for a PUBACK that never comes, and only a re-send can deliver them. `drop =
"publish"` swallows only PUBLISH packets (the rest, DISCONNECT included, still goes through).

`v5` makes the relay speak like a broker that knows only MQTT 3.1.1, for an MQTT 5 CONNECT
(protocol level 5): "close" closes without a CONNACK (RabbitMQ 3.x: its parser fails on the v5
properties), "connack" answers a 3.1.1 CONNACK with return code 1, "unacceptable protocol
version" (older brokers). Everything else, the CONNECT included, goes to Mosquitto as is.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from typing import Literal

import pytest

from tests.support.mosquitto import Broker

V5Answer = Literal["pass", "close", "connack"]
Drop = Literal["nothing", "publish", "all"]
PUBLISH = 3
CONNACK_BAD_VERSION = b"\x20\x02\x00\x01"


def _read_exact(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError("closed while reading CONNECT")
        data += chunk
    return data


def read_packet(sock: socket.socket) -> bytes:
    """One whole MQTT control packet (fixed header with its variable-length size, and body)."""
    head = _read_exact(sock, 1)
    size, shift = 0, 0
    while True:
        byte = _read_exact(sock, 1)
        head += byte
        size += (byte[0] & 0x7F) << shift
        shift += 7
        if not byte[0] & 0x80:
            return head + _read_exact(sock, size)


def protocol_level(connect: bytes) -> int:
    """The protocol level byte of a CONNECT: 4 for 3.1.1, 5 for MQTT 5."""
    body = connect[1:]
    while body[0] & 0x80:  # skip the remaining-length bytes
        body = body[1:]
    name_len = int.from_bytes(body[1:3], "big")
    return body[3 + name_len]


class Relay:
    """Listens on 127.0.0.1:`port` (0: a free one) and relays to the broker at `target`."""

    def __init__(self, target: int, *, v5: V5Answer = "pass", port: int = 0) -> None:
        self.target = target
        self.v5 = v5
        self.port = port
        self.connects: list[int] = []  # protocol level of each CONNECT seen
        self.drop: Drop = "nothing"  # what clients send that goes nowhere
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._server: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.drop = "nothing"
        server = socket.create_server(("127.0.0.1", self.port))
        self.port = server.getsockname()[1]
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def kill(self) -> None:
        """As a dead node: no listener, every connection reset, bytes in transit gone."""
        server, self._server = self._server, None
        if server is not None:
            with contextlib.suppress(OSError):
                server.shutdown(socket.SHUT_RDWR)
            server.close()
        with self._lock:
            socks, self._socks = self._socks, []
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return  # killed
            self._keep(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _keep(self, sock: socket.socket) -> None:
        with self._lock:
            self._socks.append(sock)

    def _serve(self, client: socket.socket) -> None:
        try:
            connect = read_packet(client)
        except OSError:
            client.close()
            return
        level = protocol_level(connect)
        self.connects.append(level)
        if level == 5 and self.v5 != "pass":
            with contextlib.suppress(OSError):
                if self.v5 == "connack":
                    client.sendall(CONNACK_BAD_VERSION)
                client.close()
            return
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            upstream.settimeout(None)
            upstream.sendall(connect)
        except OSError:
            client.close()
            return
        self._keep(upstream)
        threading.Thread(target=_pump, args=(upstream, client), daemon=True).start()
        self._forward(client, upstream)

    def _forward(self, client: socket.socket, upstream: socket.socket) -> None:
        """Client to broker, a packet at a time, so that `drop` can pick PUBLISH packets."""
        try:
            while True:
                packet = read_packet(client)
                if self.drop == "nothing" or (self.drop == "publish" and packet[0] >> 4 != PUBLISH):
                    upstream.sendall(packet)
        except OSError:
            pass
        _close(client, upstream)


def _pump(source: socket.socket, sink: socket.socket) -> None:
    """Copy bytes one way until either side closes, then close both."""
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    _close(source, sink)


def _close(*socks: socket.socket) -> None:
    for sock in socks:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()


@pytest.fixture
def relays(broker: Broker) -> Iterator[Callable[..., Relay]]:
    """`relays(v5=...)`: a started relay in front of the test's Mosquitto; all killed at the end."""
    made: list[Relay] = []

    def make(v5: V5Answer = "pass") -> Relay:
        relay = Relay(broker.port, v5=v5)
        relay.start()
        made.append(relay)
        return relay

    yield make
    for relay in made:
        relay.kill()
