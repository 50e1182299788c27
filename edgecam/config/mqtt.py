"""`[mqtt]`: the broker, identity, QoS, TLS and credentials.

Pure: nothing here reads the environment or files at import or validation time. The password is
resolved by `resolve_password` when the sink connects, so `config show` never needs it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from edgecam.config.base import Section, check_device_id, check_env_name
from edgecam.config.problems import describe_errors, format_problems
from edgecam.errors import ConfigError
from edgecam.secrets import mask_url_password, read_secret

DEFAULT_PORT = 1883


DEFAULT_TLS_PORT = 8883


_PORT_TEXT = re.compile(r"[0-9]{1,5}")
_NOT_IN_HOST = " /?#@[]\\"


_SCHEMES = {"mqtt": False, "tcp": False, "mqtts": True, "ssl": True, "tls": True}

#: Broker nodes one device may list (a cluster has a handful; more is a typo or a paste).
MAX_URLS = 32

#: `mqtt.protocol`: "auto" tries MQTT 5 and falls back to 3.1.1 when the broker refuses it.
Protocol = Literal["auto", "5", "3.1.1"]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where to connect, resolved from `url` or `host`/`port`/`tls`."""

    host: str
    port: int
    tls: bool
    username: str | None


def _port_error(value: object) -> PydanticCustomError:
    return PydanticCustomError(
        "edgecam_port", "{value} is not a valid port (1–65535)", {"value": value}
    )


def _check_port(value: str | int) -> int:
    if isinstance(value, str) and not _PORT_TEXT.fullmatch(value):  # int() takes ' 1', '1_0', '١'
        raise _port_error(repr(value))
    port = int(value)
    if not 1 <= port <= 65535:
        raise _port_error(port)
    return port


def _check_host(host: str) -> str:
    """A name or an IP address: no URL syntax, whitespace or control characters."""
    bad = (
        not host
        or len(host) > 253
        or not host.isprintable()
        or any(c in host for c in _NOT_IN_HOST)
    )
    if bad:
        raise PydanticCustomError(
            "edgecam_host", "{host} is not a host name or address", {"host": repr(host)}
        )
    return host


def _url_error(url: str, problem: str) -> PydanticCustomError:
    return PydanticCustomError(
        "edgecam_url", "{url}: {problem}", {"url": repr(url), "problem": problem}
    )


def _split_host_port(hostport: str, url: str) -> tuple[str, str]:
    """`host[:port]` or `[IPv6]` + optional `:port`; the brackets must close and hold an
    IPv6 address, and nothing but a port may follow them."""
    if not hostport.startswith("["):
        host, _, port_text = hostport.partition(":")
        return host, port_text
    inside, closed, after = hostport[1:].partition("]")
    if not closed:
        raise _url_error(url, "unclosed '[' around an IPv6 address, e.g. mqtt://[::1]:1883")
    if after and not after.startswith(":"):
        raise _url_error(url, f"unexpected {after!r} after the IPv6 address")
    try:
        ipaddress.IPv6Address(inside.partition("%")[0])
    except ValueError:
        raise _url_error(url, f"{inside!r} in brackets is not an IPv6 address") from None
    return inside, after[1:]


def parse_mqtt_url(url: str) -> Endpoint:
    """`mqtt[s]://[user@]host[:port]` or bare `host[:port]`; no password (`ps` shows argv)."""
    scheme, sep, rest = url.strip().partition("://")
    if not sep:
        scheme, rest = "mqtt", url.strip()
    if scheme.lower() not in _SCHEMES:
        raise PydanticCustomError(
            "edgecam_url",
            "unknown scheme {scheme} in {url}: use mqtt:// or mqtts://",
            {"scheme": repr(scheme), "url": repr(url)},
        )
    tls = _SCHEMES[scheme.lower()]
    netloc, _, tail = rest.partition("/")
    if tail or "?" in netloc or "#" in netloc:
        raise PydanticCustomError(
            "edgecam_url",
            "{url}: expected nothing after host:port (set mqtt.topic_prefix)",
            {"url": repr(url)},
        )
    userinfo, at, hostport = netloc.rpartition("@")
    if at and ":" in userinfo:
        raise PydanticCustomError(
            "edgecam_url",
            "a password in the URL is visible in `ps`: use mqtt.password_file or password_env",
        )
    host, port_text = _split_host_port(hostport, url)
    port = _check_port(port_text) if port_text else (DEFAULT_TLS_PORT if tls else DEFAULT_PORT)
    return Endpoint(_check_host(host), port, tls, unquote(userinfo) if at else None)


def split_urls(value: object) -> object:
    """`"mqtt://a,mqtt://b"` (what `--mqtt` passes) or a TOML list -> one str, or a tuple of
    several; anything else is left for the type check to refuse."""
    if isinstance(value, str):
        parts = [part.strip() for part in value.split(",")]
        if len(parts) > 1:
            return tuple(parts)
        return value
    if isinstance(value, list | tuple):
        odd = next((item for item in value if not isinstance(item, str)), None)
        if odd is not None:
            raise PydanticCustomError(
                "edgecam_url",
                '{value} is not a URL: expected text like "mqtt://host:1883" (quoted in TOML)',
                {"value": repr(odd)},
            )
        return tuple(value)
    return value


def check_urls(urls: tuple[str, ...]) -> list[Endpoint]:
    """Every node URL by the one-URL rules; the list is one broker, so its nodes share TLS and
    user name (the credentials and CA settings apply to all of them)."""
    if not urls:
        raise PydanticCustomError("edgecam_url", "an empty list: give at least one broker URL")
    if len(urls) > MAX_URLS:
        raise PydanticCustomError(
            "edgecam_url",
            "{count} URLs: at most {limit} broker nodes",
            {"count": len(urls), "limit": MAX_URLS},
        )
    endpoints = []
    for number, url in enumerate(urls, 1):
        try:
            endpoints.append(parse_mqtt_url(url))
        except PydanticCustomError as exc:
            raise _entry_error(number, len(urls), url, exc.message()) from None
    places = {(e.host.lower(), e.port) for e in endpoints}
    if len(places) < len(endpoints):
        raise _url_error(", ".join(urls), "the same host:port is listed twice")
    if len({e.tls for e in endpoints}) > 1:
        raise _url_error(
            ", ".join(urls),
            "mixes mqtt:// and mqtts:// nodes: the nodes of one broker take the same TLS"
            " settings, use one scheme for all",
        )
    if len({e.username for e in endpoints}) > 1:
        raise _url_error(
            ", ".join(urls),
            "different user names: the nodes of one broker share the credentials"
            " (put user@ in every URL, or set mqtt.username once)",
        )
    return endpoints


def _entry_error(number: int, count: int, url: str, problem: str) -> PydanticCustomError:
    if count == 1:
        return PydanticCustomError("edgecam_url", problem)
    shown = repr(mask_url_password(url))
    where = f"node {number} of {count}"
    text = problem if shown in problem else f"{shown}: {problem}"
    return PydanticCustomError("edgecam_url", "{where}: {text}", {"where": where, "text": text})


class MqttSection(Section):
    """`[mqtt]`: broker, identity, delivery, security. Off while neither url nor host is set."""

    url: str | tuple[str, ...] | None = Field(
        None,
        description="mqtt://[user@]host[:port] or mqtts://...; a list (or a comma list) names"
        " the nodes of one clustered broker, tried in order",
    )
    host: str | None = None
    port: int | None = Field(None, description="default 1883, or 8883 with TLS")
    tls: bool = False
    ca_file: Path | None = Field(
        None, description="CA bundle to verify the broker (default: system CAs)"
    )
    cert_file: Path | None = Field(None, description="client certificate (PEM) for TLS client auth")
    key_file: Path | None = None
    tls_insecure: bool = Field(False, description="skip host name verification (testing only)")
    username: str | None = None
    password: SecretStr | None = Field(
        None, description="discouraged: use password_file or password_env"
    )
    password_file: Path | None = None
    password_env: str | None = None
    protocol: Protocol = Field(
        "auto", description='"auto" (MQTT 5, else 3.1.1 when the broker refuses 5), "5", "3.1.1"'
    )
    qos: Literal[0, 1, 2] = 1
    topic_prefix: str = "edgecam"
    device_id: str | None = Field(None, description="one topic level; default: hostname, sanitised")
    client_id: str | None = Field(
        None, description="default: edgecam-<device_id> (stable per device)"
    )
    keepalive_s: int = Field(30, ge=5, le=3600)
    session_expiry_s: int = Field(3600, ge=0, le=4_294_967_295)
    connect_timeout_s: float = Field(
        5.0, gt=0, le=120, description="first connection attempt bound"
    )
    reconnect_min_s: float = Field(0.5, gt=0, le=60)
    reconnect_max_s: float = Field(30.0, gt=0, le=3600)
    max_inflight: int = Field(20, ge=1, le=65535, description="messages awaiting PUBACK at once")
    publish_detections: bool = Field(
        True,
        description="a message per frame with detections (or classes); false: events only"
        " (with [events] enabled), for large fleets",
    )
    publish_empty_frames: bool = Field(False, description="publish frames with no detections too")
    publish_counts: bool = Field(
        True, description="retained count/<label> from each frame's detections"
    )

    @field_validator("url", mode="before")
    @classmethod
    def _split_url(cls, value: Any) -> Any:
        return split_urls(value)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | tuple[str, ...] | None) -> str | tuple[str, ...] | None:
        if value is not None:
            check_urls((value,) if isinstance(value, str) else value)
        return value

    @field_validator("protocol", mode="before")
    @classmethod
    def _protocol(cls, value: Any) -> Any:
        """TOML has no 3.1.1 number, but `protocol = 5` is what people write."""
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("port", mode="before")
    @classmethod
    def _port(cls, value: Any) -> Any:
        if value is None or isinstance(value, bool):
            return value
        return _check_port(value) if isinstance(value, int | str) else value

    @field_validator("host")
    @classmethod
    def _host(cls, value: str | None) -> str | None:
        return None if value is None else _check_host(value)

    @field_validator("topic_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        return check_topic_prefix(value)

    _device = field_validator("device_id")(check_device_id)

    _env = field_validator("password_env")(check_env_name)

    @model_validator(mode="after")
    def _coherent(self) -> MqttSection:
        secrets = [n for n in ("password", "password_file", "password_env") if getattr(self, n)]
        if len(secrets) > 1:
            raise ValueError(f"set only one of {', '.join(secrets)}")
        if secrets and not self.endpoint_username():
            raise ValueError(f"{secrets[0]} needs a username (mqtt.username or user@ in the URL)")
        if self.url and (self.host or self.port):
            raise ValueError("set either url or host/port, not both")
        if (
            self.ca_file or self.cert_file or self.key_file or self.tls_insecure
        ) and not self.uses_tls():
            raise ValueError("TLS options are set but TLS is off: use mqtts:// or tls = true")
        if self.key_file and not self.cert_file:
            raise ValueError("key_file needs cert_file")
        if self.publish_empty_frames and not self.publish_detections:
            raise ValueError("publish_empty_frames needs publish_detections")
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError("reconnect_min_s must be <= reconnect_max_s")
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.url or self.host)

    def urls(self) -> tuple[str, ...]:
        """`url` as a tuple of node URLs (empty when `url` is unset)."""
        if self.url is None:
            return ()
        return (self.url,) if isinstance(self.url, str) else self.url

    def uses_tls(self) -> bool:
        return check_urls(self.urls())[0].tls if self.url else self.tls

    def endpoint_username(self) -> str | None:
        from_url = check_urls(self.urls())[0].username if self.url else None
        return from_url or self.username

    def endpoints(self) -> tuple[Endpoint, ...]:
        """The broker's nodes, in the configured order; ConfigError when MQTT is not configured."""
        if self.url:
            user = self.endpoint_username()
            return tuple(Endpoint(e.host, e.port, e.tls, user) for e in check_urls(self.urls()))
        if not self.host:
            raise ConfigError(
                "mqtt: no broker configured: set mqtt.url or mqtt.host, or pass --mqtt URL"
            )
        port = self.port or (DEFAULT_TLS_PORT if self.tls else DEFAULT_PORT)
        return (Endpoint(self.host, port, self.tls, self.username),)


def check_topic_prefix(value: str) -> str:
    """A prefix of one or more levels, no wildcards, no leading/trailing '/', not a $SYS topic."""
    bad = (
        not value
        or value.startswith(("/", "$"))
        or value.endswith("/")
        or "//" in value
        or any(c in value for c in "+#\0")
    )
    if bad:
        raise PydanticCustomError(
            "edgecam_topic",
            "{value} is not a topic prefix: levels separated by '/', no + # or leading $ or '/'",
            {"value": repr(value)},
        )
    return value


class _MqttRoot(Section):
    """Lets the shared error formatter name paths `mqtt.<field>` as in the config file."""

    mqtt: MqttSection


def validate_mqtt(data: Mapping[str, Any], origin: str) -> MqttSection:
    """Validate a raw [mqtt] table; ConfigError lists every bad field (`origin: mqtt.x: ...`)."""

    try:
        return _MqttRoot.model_validate({"mqtt": data}).mqtt
    except ValidationError as exc:
        raise ConfigError(format_problems(describe_errors(exc, _MqttRoot, origin=origin))) from None


def with_url(data: Mapping[str, Any], url: str) -> dict[str, Any]:
    """A raw [mqtt] table with its broker address replaced by `url` (one, or a comma list)."""
    merged = {k: v for k, v in data.items() if k not in ("host", "port", "tls")}
    merged["url"] = url
    return merged


def resolve_password(cfg: MqttSection, environ: dict[str, str] | None = None) -> str | None:
    """Read the password from its file or environment variable (only when connecting)."""
    if cfg.password is not None:
        return cfg.password.get_secret_value()
    return read_secret(
        "mqtt.password", file=cfg.password_file, env=cfg.password_env, environ=environ
    )
