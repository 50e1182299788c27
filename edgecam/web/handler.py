"""Routes: which request gets what, and who may ask.

Nothing here touches the file system with a name from a request: static files are a fixed
table read from the package at start, snapshots are looked up by track id in memory. The only
POSTs are login and logout; both need a JSON body and the CSRF token (see edgecam.web.auth).
Without credentials configured the server listens on loopback only and answers only requests
whose Host is this machine (or ``web.allowed_hosts``): a web page elsewhere cannot reach it
through DNS rebinding.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable
from http import HTTPStatus
from urllib.parse import parse_qsl, urlsplit

from edgecam.web import api
from edgecam.web.auth import CSRF_COOKIE, SESSION_COOKIE, new_csrf_token, read_cookies
from edgecam.web.respond import MAX_QUERY, PAGES, SECURITY_HEADERS, STATIC, Responder
from edgecam.web.zones import build_draft, membership

log = logging.getLogger(__name__)

LONG_POLL_S = 5.0
_TRACK = re.compile(r"^/api/snapshots/([A-Za-z0-9_.-]{1,100})\.jpg$")


class Handler(Responder):
    """One connection (keep-alive: several requests): dispatch to the routes below."""

    def do_GET(self) -> None:  # noqa: N802 - http.server names
        self._dispatch("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch("HEAD")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def _not_allowed(self) -> None:
        self._send_json(HTTPStatus.METHOD_NOT_ALLOWED, {"error": "method not allowed"})

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed  # noqa: N815

    def _dispatch(self, method: str) -> None:
        self._query: dict[str, str] = {}
        self._cookies = read_cookies(self.headers.get("Cookie"))
        if len(self.path) > MAX_QUERY:
            self._send_json(HTTPStatus.REQUEST_URI_TOO_LONG, {"error": "URL too long"})
            return
        parts = urlsplit(self.path)
        path = parts.path
        self._query = dict(parse_qsl(parts.query, keep_blank_values=True))
        if not self._host_ok():
            self._send_text(
                HTTPStatus.FORBIDDEN,
                "unknown Host: open the page as http://localhost:PORT/ (or add the name to "
                "web.allowed_hosts)\n",
            )
            return
        if method == "POST":
            self._post(path)
            return
        if path == "/healthz":
            self._healthz()
            return
        if path in PAGES:
            self._page(path)
            return
        if path.startswith("/static/") and path[8:] in STATIC:
            name = path[8:]
            self._send(HTTPStatus.OK, self.app.static[name], STATIC[name], cache="no-cache")
            return
        if path == "/favicon.ico":
            self._send(HTTPStatus.OK, self.app.static["icon.svg"], STATIC["icon.svg"])
            return
        route = GET_ROUTES.get(path)
        snapshot = _TRACK.match(path)
        if route is None and snapshot is None:
            self._send_json(HTTPStatus.NOT_FOUND, {"error": f"no such page: {path[:100]}"})
            return
        if not self._authorized():
            self._send_json(HTTPStatus.UNAUTHORIZED, {"error": "log in first", "login": "/login"})
            return
        if snapshot is not None:
            self._snapshot(snapshot.group(1))
        elif route is not None:
            route(self)

    def _page(self, path: str) -> None:
        if path == "/" and not self._authorized():
            self.send_response(HTTPStatus.SEE_OTHER)
            self.send_header("Location", "/login")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        headers = {}
        if CSRF_COOKIE not in self._cookies:
            headers["Set-Cookie"] = self._cookie(
                CSRF_COOKIE, new_csrf_token(), http_only=False, max_age=None
            )
        body = self.app.static[PAGES[path]]
        self._send(HTTPStatus.OK, body, "text/html; charset=utf-8", headers=headers)

    def _healthz(self) -> None:
        healthy, reason = self.app.run.health()
        status = HTTPStatus.OK if healthy else HTTPStatus.SERVICE_UNAVAILABLE
        self._send_text(status, f"{'ok' if healthy else 'unhealthy'}: {reason}\n")

    # -- POST: login, logout -------------------------------------------------------------

    def _post(self, path: str) -> None:
        if path not in ("/api/login", "/api/logout"):
            self._send_json(HTTPStatus.METHOD_NOT_ALLOWED, {"error": "method not allowed"})
            return
        if not self.app.auth.required:
            self._send_json(HTTPStatus.NOT_FOUND, {"error": "no login configured"})
            return
        body = self._json_body()
        if body is None:
            return
        if path == "/api/logout":
            if not self._authorized():
                self._send_json(HTTPStatus.UNAUTHORIZED, {"error": "not logged in"})
                return
            self.app.auth.logout(self.headers.get("Cookie"))
            expired = self._cookie(SESSION_COOKIE, "", http_only=True, max_age=0)
            self._send_json(HTTPStatus.OK, {"ok": True}, {"Set-Cookie": expired})
            return
        wait = self.app.auth.limiter.take()
        if wait > 0:
            self._send_json(
                HTTPStatus.TOO_MANY_REQUESTS,
                {"error": f"too many attempts, wait {wait:.0f} s"},
                {"Retry-After": str(max(1, round(wait)))},
            )
            return
        secret = body.get("password")
        session = self.app.auth.login(secret) if isinstance(secret, str) else None
        if session is None:
            log.warning("web: failed login from %s", self.client_address[0])
            self._send_json(HTTPStatus.UNAUTHORIZED, {"error": "wrong password"})
            return
        max_age = round(self.app.config.session_hours * 3600)
        cookie = self._cookie(SESSION_COOKIE, session, http_only=True, max_age=max_age)
        self._send_json(HTTPStatus.OK, {"ok": True}, {"Set-Cookie": cookie})

    def _info(self) -> None:
        app = self.app
        doc = api.info_document(
            app.run.info, app.zones, fps=app.config.fps, auth_required=app.auth.required
        )
        self._send_json(HTTPStatus.OK, doc)

    def _live(self) -> None:
        self._send_json(HTTPStatus.OK, api.live_document(self.app.slot.latest()))

    def _frame(self) -> None:
        after = _int(self._query.get("after"), -1)
        wait = min(max(_float(self._query.get("wait"), 2.0), 0.0), LONG_POLL_S)
        zones = self._query.get("zones", "1") != "0"
        encoded = self.app.encoder.frame(after, with_zones=zones, timeout=wait)
        if encoded is None:
            self._send(HTTPStatus.NO_CONTENT, b"", "image/jpeg")
            return
        headers = {"X-Frame-Seq": str(encoded.seq), "X-Frame-Time": f"{encoded.timestamp:.3f}"}
        self._send(HTTPStatus.OK, encoded.jpeg, "image/jpeg", headers=headers)

    def _stream(self) -> None:
        """MJPEG for other tools (VLC, Home Assistant's MJPEG camera), at most 4 at once."""
        app = self.app
        if not app.streams.acquire(blocking=False):
            self._send_json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": "too many streams"})
            return
        try:
            self.close_connection = True
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            for name, value in SECURITY_HEADERS.items():
                self.send_header(name, value)
            self.end_headers()
            zones = self._query.get("zones", "1") != "0"
            last = -1
            while not app.stopping.is_set() and self.command != "HEAD":
                encoded = app.encoder.frame(last, with_zones=zones, timeout=2.0)
                if encoded is None:
                    continue
                head = (
                    f"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {len(encoded.jpeg)}"
                    f"\r\nX-Frame-Seq: {encoded.seq}\r\n\r\n"
                )
                self.wfile.write(head.encode() + encoded.jpeg + b"\r\n")
                self.wfile.flush()
                last = encoded.seq
        finally:
            app.streams.release()

    def _events(self) -> None:
        label = self._query.get("label") or None
        limit = min(max(_int(self._query.get("limit"), 100), 1), 1000)
        log_ = self.app.events
        doc = {
            "events": log_.recent(label, limit),
            "labels": log_.labels(),
            "counts": log_.counts(),
            "snapshots": self.app.shots.known(),
        }
        self._send_json(HTTPStatus.OK, doc)

    def _snapshot(self, track_id: str) -> None:
        jpeg = self.app.shots.jpeg(track_id)
        if jpeg is None:
            self._send_json(HTTPStatus.NOT_FOUND, {"error": "no snapshot for that track"})
            return
        self._send(HTTPStatus.OK, jpeg, "image/jpeg", cache="private, max-age=60")

    def _stats(self) -> None:
        self._send_json(HTTPStatus.OK, self.app.run.stats_payload())

    def _health(self) -> None:
        app = self.app
        web = {
            **app.counters(),
            "max_clients": app.config.max_clients,
            "live_fps": app.config.fps,
            "tls": app.config.tls,
            "auth": app.auth.required,
        }
        doc = app.run.health_payload({"web": web, "objects": app.events.counts()})
        self._send_json(HTTPStatus.OK, doc)

    def _draft(self, *, as_file: bool = False) -> None:
        app = self.app
        draft = build_draft(self._query, existing=app.zones, known_labels=app.run.info.labels)
        if as_file:
            if not draft.ok:
                self._send_text(HTTPStatus.UNPROCESSABLE_ENTITY, "\n".join(draft.problems) + "\n")
                return
            name = re.sub(r"[^A-Za-z0-9_-]", "_", self._query.get("name", "zone")) or "zone"
            headers = {"Content-Disposition": f'attachment; filename="zone-{name}.toml"'}
            self._send(HTTPStatus.OK, draft.toml.encode(), "application/toml", headers=headers)
            return
        name = self._query.get("name", "").strip()
        zone = next((z for z in draft.zones if z.name == name), None)
        inside = membership(zone, app.slot.latest()) if zone is not None else []
        doc = {"ok": draft.ok, "problems": draft.problems, "toml": draft.toml, "objects": inside}
        self._send_json(HTTPStatus.OK, doc)

    def _metrics(self) -> None:
        body, content_type = self.app.metrics.exposition(self.headers.get("Accept"))
        self._send(HTTPStatus.OK, body, content_type)


def _int(text: str | None, default: int) -> int:
    try:
        return int(text) if text is not None else default
    except ValueError:
        return default


def _float(text: str | None, default: float) -> float:
    try:
        value = float(text) if text is not None else default
    except ValueError:
        return default
    return value if math.isfinite(value) else default


GET_ROUTES: dict[str, Callable[[Handler], None]] = {
    "/api/info": Handler._info,
    "/api/live": Handler._live,
    "/api/frame.jpg": Handler._frame,
    "/stream.mjpg": Handler._stream,
    "/api/events": Handler._events,
    "/api/stats": Handler._stats,
    "/api/health": Handler._health,
    "/api/zones/draft": Handler._draft,
    "/api/zones/draft.toml": lambda h: h._draft(as_file=True),
    "/metrics": Handler._metrics,
}
