"""The HTTP server: the standard library's, with a hard cap on connections and a clean stop.

Why not a framework: the page needs a dozen GET routes, one long-poll and an MJPEG stream;
``http.server`` does that without a dependency. What it lacks is added here: at most
``max_clients`` connections are served at once (one more gets a 503 straight from the accept
loop, so a flood costs no thread), every socket has a timeout (a client that stops reading or
never finishes its request is dropped, and only its own thread ever waited), TLS handshakes
run in the client's thread (a slow handshake cannot stall accept), no reverse DNS lookups, and
``stop()`` closes every client socket and joins the threads within a deadline.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import socketserver
import ssl
import threading
import time
from http.server import HTTPServer
from pathlib import Path
from typing import Any

from edgecam.errors import ConfigError, SinkError
from edgecam.web.handler import Handler
from edgecam.web.respond import WebApp

log = logging.getLogger(__name__)

CLIENT_TIMEOUT_S = 15.0
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nRetry-After: 2\r\n"
    b"Connection: close\r\nContent-Length: 36\r\n\r\ntoo many clients, try again shortly\n"
)


def tls_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """Server-side TLS 1.2+ with the configured certificate; ConfigError if it does not load."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"web.tls_cert_file/tls_key_file: cannot load {cert_file} with {key_file}: "
            f"{getattr(exc, 'strerror', None) or exc}",
            "give a PEM certificate and its unencrypted PEM private key",
        ) from None
    return context


class WebServer(HTTPServer):
    """Bounded, stoppable HTTP(S) server for one WebApp."""

    allow_reuse_address = True
    request_queue_size = 16

    def __init__(
        self,
        app: WebApp,
        bind: str,
        port: int,
        *,
        max_clients: int,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in bind else socket.AF_INET
        self.app = app
        self.tls = tls
        self.max_clients = max_clients
        self._slots = threading.BoundedSemaphore(max_clients)
        self._clients: dict[socket.socket, threading.Thread] = {}
        self._clients_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.rejected = 0
        try:
            super().__init__((bind, port), Handler)
        except OSError as exc:
            raise SinkError(
                f"web: cannot listen on {bind}:{port}: {exc.strerror or exc}",
                "choose another web.port (or --web PORT), or stop what uses it",
            ) from None

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def server_bind(self) -> None:
        """Like HTTPServer's, minus the getfqdn() lookup that can hang on a board without DNS."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    @property
    def clients(self) -> int:
        with self._clients_lock:
            return len(self._clients)

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="edgecam-web",
            daemon=True,
        )
        self._thread.start()

    def process_request(self, request: Any, client_address: Any) -> None:
        """One thread per connection, at most max_clients; the rest get a 503 and a close."""
        if not self._slots.acquire(blocking=False):
            self.rejected += 1
            if self.tls is None:
                with contextlib.suppress(OSError):
                    request.settimeout(0.5)
                    request.sendall(_BUSY)
            self.shutdown_request(request)
            return
        thread = threading.Thread(
            target=self._serve,
            args=(request, client_address),
            name="edgecam-web-client",
            daemon=True,
        )
        with self._clients_lock:
            self._clients[request] = thread
        thread.start()

    def _serve(self, request: socket.socket, client_address: Any) -> None:
        conn: socket.socket = request
        try:
            request.settimeout(CLIENT_TIMEOUT_S)
            if self.tls is not None:
                conn = self.tls.wrap_socket(request, server_side=True)
                with self._clients_lock:
                    self._clients[conn] = self._clients.pop(request)
            self.finish_request(conn, client_address)
        except (OSError, ssl.SSLError) as exc:
            log.debug("web client %s: %s", client_address[0], exc)
        except Exception:
            log.exception("web client %s: request failed", client_address[0])
        finally:
            self.shutdown_request(conn)
            with self._clients_lock:
                self._clients.pop(conn, None)
                self._clients.pop(request, None)
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("web client %s: error", client_address, exc_info=True)

    def stop(self, timeout: float = 3.0) -> None:
        """Stop accepting, wake long-polls and streams, close client sockets, join threads."""
        deadline = time.monotonic() + timeout
        self.app.stopping.set()
        self.app.slot.close()
        if self._thread is not None:
            self.shutdown()
            self._thread.join(max(0.1, deadline - time.monotonic()))
        self.server_close()
        with self._clients_lock:
            clients = dict(self._clients)
        for sock in clients:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in clients.values():
            thread.join(max(0.05, deadline - time.monotonic()))
        stuck = sum(t.is_alive() for t in clients.values())
        if stuck:
            log.warning("web: %d client thread(s) still running after %.1f s", stuck, timeout)
