"""`[web]`: the built-in page (live view, zone editor, events, health) and `/metrics`.

Pure: nothing here reads files. The rule that matters is checked here, so `edgecam config check`
catches it before a start: a server reachable from other machines must ask for credentials.
Loopback ("127.0.0.1", "::1", "localhost") is reachable only from the device itself, or through
an SSH tunnel, which brings its own authentication.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_core import PydanticCustomError

from edgecam.config.base import Section

DEFAULT_PORT = 8080
#: Host names that always mean this machine (anything else is resolved by the OS at bind time).
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
_HOST = re.compile(r"^[A-Za-z0-9.:_-]{1,253}$")
#: What `edgecam web hash-password` writes: scrypt$N$r$p$salt$hash (base64, no padding).
PASSWORD_HASH = re.compile(r"^scrypt\$\d+\$\d+\$\d+\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$")


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_web_address(text: str) -> tuple[str | None, int]:
    """`--web [HOST:]PORT`: "8080", "0.0.0.0:8080", "[::1]:8080" -> (host or None, port).

    ValueError with the expected forms when `text` is none of them.
    """
    value = text.strip()
    if value.startswith("["):  # [IPv6]:port
        host, sep, port_text = value[1:].partition("]:")
        if not sep:
            raise ValueError(f"{text!r}: expected [IPV6]:PORT, e.g. [::1]:8080")
    elif value.count(":") == 1:
        host, port_text = value.split(":")
    elif ":" in value:
        raise ValueError(f"{text!r}: write an IPv6 address in brackets, e.g. [::1]:8080")
    else:
        host, port_text = "", value
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"{text!r}: expected [HOST:]PORT with a port 1-65535, e.g. 8080")
    if host and not _HOST.match(host):
        raise ValueError(f"{text!r}: {host!r} is not a host name or address")
    return (host or None), int(port_text)


class WebSection(Section):
    """`[web]`: off unless enabled (or `edgecam run --web [HOST:]PORT`)."""

    enabled: bool = Field(False, description="serve the page and /metrics")
    bind: str = Field("127.0.0.1", description="address to listen on; loopback needs no auth")
    port: int = Field(DEFAULT_PORT, ge=1, le=65535)
    password_hash: str | None = Field(
        None, description="output of `edgecam web hash-password` (scrypt); enables the login"
    )
    password_hash_file: Path | None = Field(
        None, description="file holding that hash (e.g. a systemd credential)"
    )
    token: SecretStr | None = Field(
        None, description="discouraged here: use token_file (Authorization: Bearer ...)"
    )
    token_file: Path | None = Field(
        None, description="file holding a bearer token for scrapers and scripts"
    )
    tls_cert_file: Path | None = Field(None, description="PEM certificate: serve HTTPS")
    tls_key_file: Path | None = Field(None, description="PEM private key of tls_cert_file")
    allowed_hosts: tuple[str, ...] = Field(
        (),
        description="extra Host names accepted without auth (loopback names always are)",
    )
    fps: float = Field(5.0, gt=0, le=30, description="live view: most frames encoded per second")
    jpeg_quality: int = Field(75, ge=10, le=100, description="live view JPEG quality")
    max_size: int = Field(960, ge=160, le=4096, description="live view: longest side in pixels")
    max_clients: int = Field(8, ge=1, le=64, description="connections served at once")
    events_kept: int = Field(200, ge=10, le=5000, description="recent events held in memory")
    session_hours: float = Field(12.0, gt=0, le=24 * 30, description="login lifetime")
    healthz_max_age_s: float = Field(
        10.0, gt=0, le=3600, description="/healthz: 503 after this long without a frame"
    )

    @field_validator("bind")
    @classmethod
    def _host(cls, value: str) -> str:
        host = value.strip().strip("[]")
        if not host or not _HOST.match(host):
            raise PydanticCustomError(
                "edgecam_host", "{value} is not a host name or address", {"value": repr(value)}
            )
        return host

    @field_validator("password_hash")
    @classmethod
    def _hash(cls, value: str | None) -> str | None:
        if value is not None and not PASSWORD_HASH.match(value.strip()):
            raise PydanticCustomError(
                "edgecam_hash",
                "not a password hash: paste the line `edgecam web hash-password` prints "
                "(scrypt$...), never the password itself",
            )
        return value.strip() if value is not None else None

    @model_validator(mode="after")
    def _auth_and_tls(self) -> WebSection:
        if self.password_hash and self.password_hash_file:
            raise ValueError("set password_hash or password_hash_file, not both")
        if self.token is not None and self.token_file:
            raise ValueError("set token or token_file, not both")
        if self.token is not None and len(self.token.get_secret_value()) < 16:
            raise ValueError("token: use at least 16 characters (e.g. `openssl rand -hex 16`)")
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ValueError("tls_cert_file and tls_key_file go together: set both or neither")
        if self.enabled and not is_loopback(self.bind) and not self.has_auth:
            raise ValueError(
                f"bind = {self.bind!r} is reachable from other machines, so the page needs a "
                "login: set web.password_hash (from `edgecam web hash-password`) or "
                "web.token_file; or keep bind = '127.0.0.1' and use an SSH tunnel "
                "(ssh -L 8080:127.0.0.1:8080 pi@camera)"
            )
        return self

    @property
    def has_auth(self) -> bool:
        return bool(
            self.password_hash
            or self.password_hash_file
            or self.token is not None
            or self.token_file
        )

    @property
    def tls(self) -> bool:
        return self.tls_cert_file is not None

    def url(self) -> str:
        host = f"[{self.bind}]" if ":" in self.bind else self.bind
        if host in ("0.0.0.0", "[::]"):
            host = "<this device's address>"
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}/"
