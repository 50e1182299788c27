"""A video "camera" on 127.0.0.1: serves one file over HTTP and can fail on demand.

OpenCV's FFmpeg backend reads http:// URLs, so this stands in for an IP camera without any
camera. stop() cuts every open connection and stops listening (camera unplugged); start()
listens again on the same port (camera back). Options shape the failure:
- limit: send only the first N bytes of the file, then close (stream drops mid-way);
- stall_after: send N bytes, then hold the connection open silently (hung camera); later
  connections are accepted but never answered, so opening hangs too;
- rate: bytes per second, so a client cannot buffer the whole file at once;
- auth: (user, password) required with HTTP basic authentication, like an IP camera's.
"""

from __future__ import annotations

import base64
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

CHUNK = 16 * 1024


class VideoServer:
    def __init__(
        self,
        path: Path,
        *,
        limit: int | None = None,
        stall_after: int | None = None,
        rate: float | None = None,
        auth: tuple[str, str] | None = None,
    ) -> None:
        self.data = path.read_bytes()
        self.auth = auth
        self.refused = 0
        self.name = path.name
        self.limit = limit
        self.stall_after = stall_after
        self.rate = rate
        self.port = 0
        self.requests = 0
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{self.name}"

    def start(self) -> VideoServer:
        self._stopping.clear()
        server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler_class())
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="video-server")
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and cut every connection, like a camera losing power."""
        self._stopping.set()
        if self._server is None:
            return
        self._server.shutdown()  # no new connections
        with self._lock:
            for conn in self._connections:
                with contextlib.suppress(OSError):  # already closed by the client
                    conn.shutdown(socket.SHUT_RDWR)
            self._connections.clear()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = None

    def __enter__(self) -> VideoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @staticmethod
    @contextlib.contextmanager
    def closed_port() -> Iterator[int]:
        """A loopback port that refuses connections: bound, never listening."""
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            yield sock.getsockname()[1]

    def _authorised(self, handler: BaseHTTPRequestHandler) -> bool:
        if self.auth is None:
            return True
        token = base64.b64encode(":".join(self.auth).encode()).decode()
        if handler.headers.get("Authorization") == f"Basic {token}":
            return True
        self.refused += 1
        handler.send_response(401)
        handler.send_header("WWW-Authenticate", 'Basic realm="camera"')
        handler.send_header("Content-Length", "0")
        handler.end_headers()
        return False

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        if not self._authorised(handler):
            return
        with self._lock:
            self.requests += 1
            first = self.requests == 1
            self._connections.add(handler.connection)
        if self.stall_after is not None and not first:
            self._stopping.wait(60)  # accept, never answer: the open must time out
            return
        handler.send_response(200)
        handler.send_header("Content-Type", "video/mp4")
        handler.send_header("Content-Length", str(len(self.data)))
        handler.end_headers()
        end = min(len(self.data), self.limit or len(self.data), self.stall_after or len(self.data))
        for offset in range(0, end, CHUNK):
            if self._stopping.is_set():
                return
            handler.wfile.write(self.data[offset : min(offset + CHUNK, end)])
            if self.rate:
                time.sleep(CHUNK / self.rate)
        handler.wfile.flush()
        if self.stall_after is not None:
            self._stopping.wait(60)  # connection open, no more bytes

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with contextlib.suppress(OSError):  # client gone, or stop() cut us off
                    owner._serve(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
