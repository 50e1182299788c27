"""The HTTP side against a real server on loopback, fed like the pipeline feeds it.

What a user of the page relies on: the live picture is the latest frame with the boxes drawn
and is encoded only when asked; long-polls wait for a newer frame; unknown paths, traversal
attempts and foreign Host headers get nothing; at most max_clients connections are served; a
client that stops reading never holds up the sink; stop() ends every connection.
"""

from __future__ import annotations

import re
import socket
import threading
import time

import cv2
import numpy as np
import pytest

from edgecam.web.respond import STATIC, load_static
from tests.web.serving import served


def _decode(jpeg: bytes) -> np.ndarray:  # type: ignore[type-arg]
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "not a JPEG"
    return image


def test_healthz_is_503_until_frames_flow_then_200() -> None:
    with served() as web:
        status, _, body = web.request("GET", "/healthz")
        assert (status, body) == (503, b"unhealthy: no frame yet\n")
        web.feed()
        status, _, body = web.request("GET", "/healthz")
        assert (status, body) == (200, b"ok: frames flowing\n")


def test_live_frame_is_the_latest_result_with_boxes_drawn() -> None:
    with served(max_size=4096) as web:
        web.feed(8)
        status, headers, jpeg = web.request("GET", "/api/frame.jpg?after=-1")
        assert status == 200 and headers["content-type"] == "image/jpeg"
        assert headers["x-frame-seq"] == "7"
        drawn = _decode(jpeg)
        assert drawn.shape == web.pixels.shape
        # boxes and captions change the picture; elsewhere it is the frame (JPEG noise only)
        diff = np.abs(drawn.astype(int) - web.pixels.astype(int)).max(axis=2)
        assert (diff > 60).mean() > 0.005
        assert np.median(diff) < 10
        live = web.get_json("/api/live")
        assert live["seq"] == 7
        person = next(o for o in live["objects"] if o["label"] == "person")
        assert person["track"] == "1" and person["track_id"] == "run1-1"
        dog = next(o for o in live["objects"] if o["label"] == "dog")
        assert dog["score"] == 0.7 and len(dog["box"]) == 4


def test_nothing_is_encoded_until_someone_asks_and_once_per_frame() -> None:
    with served() as web:
        web.feed(50)
        assert web.server.app.encoder.encoded == 0  # nobody watching: no JPEG at all
        first = web.request("GET", "/api/frame.jpg?after=-1")
        again = web.request("GET", "/api/frame.jpg?after=-1")
        assert first[2] == again[2] and web.server.app.encoder.encoded == 1


def test_long_poll_returns_the_next_frame_when_it_arrives() -> None:
    with served(fps=30) as web:
        web.feed()
        got: list[tuple[int, dict[str, str], bytes]] = []
        waiter = threading.Thread(
            target=lambda: got.append(web.request("GET", "/api/frame.jpg?after=0&wait=5"))
        )
        waiter.start()
        time.sleep(0.3)
        assert not got  # still waiting: nothing newer than frame 0 yet
        web.feed()
        waiter.join(10)
        assert got and got[0][0] == 200 and got[0][1]["x-frame-seq"] == "1"
        status, _, _ = web.request("GET", "/api/frame.jpg?after=1&wait=0.2")
        assert status == 204  # nothing newer within the wait


@pytest.mark.parametrize(
    "path",
    [
        "/static/../handler.py",  # plain traversal
        "/static/%2e%2e/handler.py",  # encoded dots
        "/static/..%2fauth.py",  # encoded slash
        "/static//etc/passwd",
        "/static/app.js/../../server.py",
        "/api/snapshots/../../../etc/passwd.jpg",
        "/api/snapshots/%2e%2e%2fetc%2fpasswd.jpg",
        "/../../etc/passwd",
        "/edgecam/web/auth.py",
        "/static/",
    ],
)
def test_no_path_reaches_the_file_system(path: str) -> None:
    with served() as web:
        status, _, body = web.request("GET", path)
        assert status == 404, (path, status)
        assert b"import" not in body and b"root:" not in body


def test_static_files_load_nothing_from_elsewhere() -> None:
    files = load_static()
    for name, body in files.items():
        text = body.decode()
        urls = set(re.findall(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}[^\s\"')]*", text))
        assert urls <= {"http://www.w3.org/2000/svg"}, (name, urls)
    assert set(STATIC) <= set(files)


def test_every_answer_carries_the_security_headers() -> None:
    with served() as web:
        for path in ("/", "/api/info", "/static/app.js", "/nope"):
            _, headers, _ = web.request("GET", path)
            assert "default-src 'none'" in headers["content-security-policy"]
            assert headers["x-content-type-options"] == "nosniff"
            assert headers["x-frame-options"] == "DENY"


def test_only_this_machine_as_host_without_auth() -> None:
    """DNS rebinding: a page on evil.example resolving to 127.0.0.1 sends Host: evil.example."""
    with served(allowed_hosts=["camera.lan"]) as web:
        for host, expected in (
            (f"127.0.0.1:{web.port}", 200),
            (f"localhost:{web.port}", 200),
            (f"[::1]:{web.port}", 200),
            (f"camera.lan:{web.port}", 200),
            (f"evil.example:{web.port}", 403),
            ("192.168.1.20", 403),
        ):
            status, _, _ = web.request("GET", "/api/info", headers={"Host": host})
            assert status == expected, host


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("POST", "/api/live", 405),  # GET-only route
        ("PUT", "/", 405),
        ("DELETE", "/api/events", 405),
        ("POST", "/api/login", 404),  # no credentials configured: no login at all
    ],
)
def test_nothing_writes_without_auth(method: str, path: str, expected: int) -> None:
    with served() as web:
        status, _, _ = web.request(method, path, body=b"{}")
        assert status == expected


def _idle_connection(port: int) -> socket.socket:
    """A connection that sent half a request: it holds a server thread until its timeout."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    return sock


def _wait_for(predicate: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached")


def test_connections_beyond_max_clients_get_503_at_once() -> None:
    with served(max_clients=2) as web:
        held = [_idle_connection(web.port), _idle_connection(web.port)]
        _wait_for(lambda: web.server.clients == 2)
        status, headers, body = web.request("GET", "/api/info")
        assert status == 503 and headers["retry-after"] == "2"
        assert body == b"too many clients, try again shortly\n"
        held.pop().close()
        _wait_for(lambda: web.server.clients == 1)
        status, _, _ = web.request("GET", "/api/info")
        assert status == 200
        for sock in held:
            sock.close()


def test_a_client_that_stops_reading_never_blocks_the_sink() -> None:
    """An MJPEG viewer that reads nothing: its socket buffers fill, its thread blocks in send;
    the pipeline's handle() calls keep returning and the other clients are served."""
    with served(fps=30, max_size=4096) as web:
        web.feed()
        stuck = socket.socket()
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.connect(("127.0.0.1", web.port))
        stuck.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        _wait_for(lambda: web.server.app.encoder.encoded >= 1)
        for _ in range(40):  # the stream's writes block long before these end
            web.feed(5)
            time.sleep(1 / 30)
        assert web.seq == 201
        status, _, _ = web.request("GET", "/api/live")
        assert status == 200
        assert web.server.clients >= 1  # the stuck viewer is still connected, and harmless
        stuck.close()


def test_stop_ends_streams_and_long_polls_and_closes_the_port() -> None:
    with served() as web:
        web.feed()
        stream = socket.create_connection(("127.0.0.1", web.port), timeout=5)
        stream.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        poll = socket.create_connection(("127.0.0.1", web.port), timeout=5)
        poll.sendall(b"GET /api/frame.jpg?after=99&wait=5 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        _wait_for(lambda: web.server.clients == 2)
        web.server.stop(timeout=3)
        assert web.server.clients == 0
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", web.port), timeout=1).close()
        stream.close()
        poll.close()


def test_mjpeg_stream_sends_jpeg_parts() -> None:
    with served(fps=30) as web:
        web.feed()
        sock = socket.create_connection(("127.0.0.1", web.port), timeout=5)
        sock.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        data = b""
        for _ in range(20):
            web.feed()
            data += sock.recv(65536)
            if data.count(b"--frame") >= 2:
                break
        sock.close()
        assert b"multipart/x-mixed-replace; boundary=frame" in data
        part = data.split(b"--frame\r\n")[1]
        head, _, jpeg = part.partition(b"\r\n\r\n")
        assert b"Content-Type: image/jpeg" in head and jpeg.startswith(b"\xff\xd8")


def test_events_and_snapshots() -> None:
    with served() as web:
        web.feed(28)  # the person walks right, enters the zone; the dog is confirmed too
        doc = web.get_json("/api/events")
        kinds = [(e["event"], e["label"]) for e in doc["events"]]
        assert ("new", "person") in kinds and ("new", "dog") in kinds
        assert any(e["event"] == "update" and e["entered"] == ["right"] for e in doc["events"])
        assert doc["labels"] == ["dog", "person"] and doc["counts"] == {"dog": 1, "person": 1}
        only = web.get_json("/api/events?label=dog")["events"]
        assert only and {e["label"] for e in only} == {"dog"}
        track = doc["events"][0]["track_id"]
        assert track in doc["snapshots"]
        status, headers, jpeg = web.request("GET", f"/api/snapshots/{track}.jpg")
        assert status == 200 and headers["content-type"] == "image/jpeg"
        assert max(_decode(jpeg).shape[:2]) <= 320
        assert web.request("GET", "/api/snapshots/nobody-1.jpg")[0] == 404
