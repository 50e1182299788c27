"""Who may see the page: scrypt password hashes, bearer tokens, login sessions, CSRF tokens.

Only the hash of the password is stored (`edgecam web hash-password` prints it), with scrypt
from the standard library: memory-hard, so a stolen config file is not a stolen password.
Checking a hash costs tens of milliseconds on purpose, so logins are rate-limited (a token
bucket shared by every client) and checked one at a time: guessing is slow and cannot be
turned into a CPU flood that starves inference.

Browsers log in once and get a random session id in an HttpOnly, SameSite=Strict cookie;
scripts and Prometheus send `Authorization: Bearer <token>`. Every POST must also carry the
double-submit CSRF token (the `edgecam_csrf` cookie echoed in an `X-CSRF-Token` header) with a
JSON body: a page on another site can neither read the cookie nor send that header.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from pathlib import Path

from edgecam.config.web import PASSWORD_HASH, WebSection
from edgecam.errors import ConfigError

SESSION_COOKIE = "edgecam_session"
CSRF_COOKIE = "edgecam_csrf"
CSRF_HEADER = "X-CSRF-Token"
#: scrypt cost: 2^14 x 8 x 128 B = 16 MiB and ~50 ms on a desktop core, ~0.2-0.4 s on a Pi 4.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
MAX_SCRYPT_N = 2**20
MAX_SESSIONS = 32
LOGIN_BURST, LOGIN_REFILL_S = 5, 2.0


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, *, n: int = SCRYPT_N, salt: bytes | None = None) -> str:
    """`scrypt$N$r$p$salt$hash`, the form `web.password_hash` takes."""
    if not password:
        raise ValueError("the password is empty")
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=SCRYPT_R, p=SCRYPT_P, maxmem=_maxmem(n, SCRYPT_R)
    )
    return f"scrypt${n}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def _maxmem(n: int, r: int) -> int:
    return 2 * 128 * n * r + 1024 * 1024


def verify_password(password: str, encoded: str) -> bool:
    """Constant-time check of `password` against a `hash_password` string."""
    try:
        _, n_text, r_text, p_text, salt, digest = encoded.split("$")
        n, r, p = int(n_text), int(r_text), int(p_text)
        if not (1 < n <= MAX_SCRYPT_N and 0 < r <= 32 and 0 < p <= 16):
            return False
        expected = _unb64(digest)
        actual = hashlib.scrypt(
            password.encode(),
            salt=_unb64(salt),
            n=n,
            r=r,
            p=p,
            dklen=len(expected),
            maxmem=_maxmem(n, r),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def _read_secret_file(path: Path, field: str) -> str:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"web.{field}: cannot read {path}: {exc.strerror}") from None
    if not text:
        raise ConfigError(f"web.{field}: {path} is empty")
    return text


@dataclass(frozen=True)
class Credentials:
    """What a client may present: the password (checked against its hash) or the token."""

    password_hash: str | None = None
    token: str | None = None

    @property
    def required(self) -> bool:
        return self.password_hash is not None or self.token is not None


def load_credentials(section: WebSection) -> Credentials:
    """Read the hash/token files named in the config (only when the server starts)."""
    password_hash = section.password_hash
    if section.password_hash_file is not None:
        password_hash = _read_secret_file(section.password_hash_file, "password_hash_file")
        if not PASSWORD_HASH.match(password_hash):
            raise ConfigError(
                f"web.password_hash_file: {section.password_hash_file} does not hold a "
                "password hash",
                "write the line `edgecam web hash-password` prints into it",
            )
    token = section.token.get_secret_value() if section.token is not None else None
    if section.token_file is not None:
        token = _read_secret_file(section.token_file, "token_file")
        if len(token) < 16:
            raise ConfigError(
                f"web.token_file: the token in {section.token_file} is shorter than 16 characters",
                "generate one with `openssl rand -hex 16`",
            )
    return Credentials(password_hash, token)


def new_csrf_token() -> str:
    return secrets.token_urlsafe(24)


def csrf_ok(cookie_value: str | None, header_value: str | None) -> bool:
    """Double-submit check: the header a script on our page set equals our cookie."""
    if not cookie_value or not header_value:
        return False
    return hmac.compare_digest(cookie_value.encode(), header_value.encode())


def read_cookies(header: str | None) -> dict[str, str]:
    """Cookie header -> {name: value}; a malformed header counts as no cookies."""
    if not header:
        return {}
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except CookieError:
        return {}
    return {name: morsel.value for name, morsel in jar.items()}


class LoginLimiter:
    """Token bucket: LOGIN_BURST attempts at once, then one per LOGIN_REFILL_S (all clients)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tokens = float(LOGIN_BURST)
        self._at = clock()
        self._lock = threading.Lock()

    def take(self) -> float:
        """0.0 if an attempt may go ahead now, else the seconds to wait."""
        with self._lock:
            now = self._clock()
            self._tokens = min(LOGIN_BURST, self._tokens + (now - self._at) / LOGIN_REFILL_S)
            self._at = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return 0.0
            return (1.0 - self._tokens) * LOGIN_REFILL_S


class Authenticator:
    """Decides whether a request may see the page; holds the (bounded) login sessions."""

    def __init__(
        self,
        credentials: Credentials,
        *,
        session_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.credentials = credentials
        self.session_s = session_s
        self.limiter = LoginLimiter(clock)
        self._clock = clock
        self._sessions: OrderedDict[str, float] = OrderedDict()  # id -> expiry
        self._lock = threading.Lock()
        self._verify_lock = threading.Lock()  # one scrypt at a time bounds CPU and memory

    @property
    def required(self) -> bool:
        return self.credentials.required

    def allows(self, cookie_header: str | None, authorization: str | None) -> bool:
        """A live session cookie or the bearer token (always True without credentials)."""
        if not self.required:
            return True
        if authorization and self._token_ok(authorization):
            return True
        session = read_cookies(cookie_header).get(SESSION_COOKIE)
        return session is not None and self.session_alive(session)

    def _token_ok(self, authorization: str) -> bool:
        scheme, _, given = authorization.partition(" ")
        token = self.credentials.token
        if token is None or scheme.lower() != "bearer":
            return False
        return _same_secret(given.strip(), token)

    def session_alive(self, session: str) -> bool:
        with self._lock:
            expiry = self._sessions.get(session)
            if expiry is None:
                return False
            if expiry < self._clock():
                del self._sessions[session]
                return False
            return True

    def login(self, secret: str) -> str | None:
        """A new session id if `secret` is the password (or the token), else None."""
        with self._verify_lock:
            ok = bool(secret) and (
                (
                    self.credentials.password_hash is not None
                    and verify_password(secret, self.credentials.password_hash)
                )
                or (
                    self.credentials.token is not None
                    and _same_secret(secret, self.credentials.token)
                )
            )
        if not ok:
            return None
        session = secrets.token_urlsafe(32)
        with self._lock:
            self._sessions[session] = self._clock() + self.session_s
            while len(self._sessions) > MAX_SESSIONS:
                self._sessions.popitem(last=False)  # the oldest login goes first
        return session

    def logout(self, cookie_header: str | None) -> None:
        session = read_cookies(cookie_header).get(SESSION_COOKIE)
        if session is not None:
            with self._lock:
                self._sessions.pop(session, None)


def _same_secret(given: str, expected: str) -> bool:
    """Constant time, whatever the lengths (digests have one length)."""
    return hmac.compare_digest(
        hashlib.sha256(given.encode()).digest(), hashlib.sha256(expected.encode()).digest()
    )
