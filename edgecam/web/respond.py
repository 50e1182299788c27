"""What every answer has in common: the shared app state, the headers, JSON and cookies,
and the checks a request passes before any route sees it (Host, credentials, CSRF body).

Nothing here touches the file system with a name from a request: static files are a fixed
table read from the package at start.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from edgecam.config.web import WebSection, is_loopback
from edgecam.config.zones import ZoneSection
from edgecam.web.auth import CSRF_COOKIE, CSRF_HEADER, Authenticator, csrf_ok
from edgecam.web.health import RunView
from edgecam.web.metrics import WebMetrics
from edgecam.web.render import FrameEncoder
from edgecam.web.state import BestShots, EventLog, LiveSlot

log = logging.getLogger(__name__)

STATIC = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "login.js": "text/javascript; charset=utf-8",
    "icon.svg": "image/svg+xml",
}
PAGES = {"/": "index.html", "/login": "login.html"}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
MAX_BODY = 4096
MAX_QUERY = 4096


def load_static() -> dict[str, bytes]:
    """Every page and asset, read once from the installed package."""
    root = resources.files("edgecam.web") / "static"
    names = [*STATIC, *PAGES.values()]
    return {name: (root / name).read_bytes() for name in names}


@dataclass
class WebApp:
    """Everything a request may need; shared by all handler threads."""

    config: WebSection
    auth: Authenticator
    slot: LiveSlot
    encoder: FrameEncoder
    events: EventLog
    shots: BestShots
    metrics: WebMetrics
    run: RunView
    zones: Sequence[ZoneSection]
    static: dict[str, bytes] = field(default_factory=load_static)
    stopping: threading.Event = field(default_factory=threading.Event)
    streams: threading.BoundedSemaphore = field(
        default_factory=lambda: threading.BoundedSemaphore(4)
    )
    counters: Callable[[], dict[str, int]] = lambda: {}


class Responder(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive; the server gives every connection a socket timeout."""

    protocol_version = "HTTP/1.1"
    _cookies: dict[str, str]

    def version_string(self) -> str:
        return "edgecam"

    @property
    def app(self) -> WebApp:
        return self.server.app  # type: ignore[attr-defined,no-any-return]

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("web %s " + format, self.client_address[0], *args)

    # -- dispatch ------------------------------------------------------------------------

    def _host_ok(self) -> bool:
        if self.app.auth.required:
            return True
        host = self.headers.get("Host")
        if not host:
            return True  # HTTP/1.0 without Host: not a browser that could be rebound
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        name = name.strip("[]").lower()
        allowed = {h.lower() for h in self.app.config.allowed_hosts}
        return is_loopback(name) or name in allowed or name == self.app.config.bind.lower()

    def _authorized(self) -> bool:
        return self.app.auth.allows(self.headers.get("Cookie"), self.headers.get("Authorization"))

    # -- sending -------------------------------------------------------------------------

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str,
        *,
        cache: str = "no-store",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        for name, value in {**SECURITY_HEADERS, **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, status: int, doc: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
        self._send(status, body, "application/json", headers=headers)

    def _send_text(self, status: int, text: str, headers: dict[str, str] | None = None) -> None:
        self._send(status, text.encode(), "text/plain; charset=utf-8", headers=headers)

    def _cookie(self, name: str, value: str, *, http_only: bool, max_age: int | None) -> str:
        parts = [f"{name}={value}", "Path=/", "SameSite=Strict"]
        if http_only:
            parts.append("HttpOnly")
        if self.app.config.tls:
            parts.append("Secure")
        if max_age is not None:
            parts.append(f"Max-Age={max_age}")
        return "; ".join(parts)

    # -- pages ---------------------------------------------------------------------------

    def _json_body(self) -> dict[str, Any] | None:
        """The request's JSON object after the CSRF, content-type and size checks (else None,
        the error already sent)."""
        origin = self.headers.get("Origin")
        host = self.headers.get("Host", "")
        if origin is not None and urlsplit(origin).netloc != host:
            self._send_json(HTTPStatus.FORBIDDEN, {"error": "cross-site request refused"})
            return None
        header = self.headers.get(CSRF_HEADER)
        if not csrf_ok(self._cookies.get(CSRF_COOKIE), header):
            self._send_json(HTTPStatus.FORBIDDEN, {"error": "missing or wrong CSRF token"})
            return None
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            self._send_json(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, {"error": "send application/json"})
            return None
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self.close_connection = True
            self._send_json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": "body too large"})
            return None
        try:
            doc = json.loads(self.rfile.read(length) or b"{}")
        except (ValueError, UnicodeDecodeError):
            doc = None
        if not isinstance(doc, dict):
            self._send_json(HTTPStatus.BAD_REQUEST, {"error": "expected a JSON object"})
            return None
        return doc

    # -- GET API -------------------------------------------------------------------------
