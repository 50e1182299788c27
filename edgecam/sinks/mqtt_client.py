"""paho-mqtt 2.x client set-up: MQTT version, session, Last Will, TLS, credentials, backoff.

Where the client connects, and which version it settles on, is edgecam.sinks.mqtt_nodes.
"""

from __future__ import annotations

import contextlib
import logging
import random
import socket
import ssl
from typing import Any, cast

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edgecam.config.mqtt import Endpoint, MqttSection, resolve_password
from edgecam.errors import ConfigError
from edgecam.logsetup import register_secret

log = logging.getLogger(__name__)

V5 = MQTTProtocolVersion.MQTTv5
V311 = MQTTProtocolVersion.MQTTv311
#: `mqtt.protocol` values -> paho's versions, and back for messages.
VERSIONS = {"5": V5, "3.1.1": V311}
VERSION_NAMES = {V5: "5", V311: "3.1.1"}

#: CONNACK "unsupported protocol version": MQTT 5's 0x84, and what paho makes of a 3.1.1
#: broker's return code 1 to a v5 CONNECT.
UNSUPPORTED_VERSION = 0x84

# CONNACK reason codes that retrying cannot fix (MQTT 5 spec 3.2.2.2; paho maps 3.1.1 codes
# 2, 4 and 5 onto 0x85, 0x86 and 0x87).
FATAL_CONNACK = {
    UNSUPPORTED_VERSION: "the broker does not support MQTT v5",
    0x85: "client identifier rejected: set mqtt.client_id",
    0x86: "bad user name or password: check mqtt.username and the password file/env",
    0x87: "not authorised: wrong user name or password, or the broker does not allow this client",
    0x8A: "client banned by the broker",
    0x8C: "bad authentication method",
}


class _QuietNotConnected(logging.Filter):
    """paho 2.2 logs "Client is not connected" at ERROR on every retry while the broker is down;
    that state is already reported once at WARNING by the sink, so drop the repeats."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Client is not connected")


PAHO_LOG = logging.getLogger("edgecam.sinks.paho")
PAHO_LOG.addFilter(_QuietNotConnected())


class Backoff:
    """Exponential backoff with jitter, so a fleet does not reconnect in lock-step."""

    def __init__(self, min_s: float, max_s: float, rng: random.Random | None = None) -> None:
        self.min_s = min_s
        self.max_s = max_s
        self.attempt = 0
        self._rng = rng or random.Random()

    def next(self) -> float:
        cap = min(self.max_s, self.min_s * 2.0**self.attempt)
        self.attempt = min(self.attempt + 1, 32)
        return self._rng.uniform(self.min_s, max(self.min_s, cap))

    def reset(self) -> None:
        self.attempt = 0


def describe(endpoint: Endpoint) -> str:
    scheme = "mqtts" if endpoint.tls else "mqtt"
    host = f"[{endpoint.host}]" if ":" in endpoint.host else endpoint.host
    return f"{scheme}://{host}:{endpoint.port}"


def build_client(
    cfg: MqttSection,
    endpoint: Endpoint,
    *,
    client_id: str,
    status_topic: str | None,
    version: MQTTProtocolVersion = V5,
    persistent: bool = True,
) -> mqtt.Client:
    """A configured but unconnected client: MQTT version, session, Last Will, TLS, auth."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=None if version == V5 else not persistent,
        protocol=version,
    )
    client.enable_logger(PAHO_LOG)
    client.suppress_exceptions = True  # a bug in a callback must not kill the network thread
    client.connect_timeout = cfg.connect_timeout_s
    # Headroom above our own window for status/stats/discovery publishes made directly.
    client.max_inflight_messages_set(cfg.max_inflight + 16)
    if status_topic is not None:  # a publisher's Last Will; subscribers (watch) have none
        client.will_set(status_topic, "offline", qos=1, retain=True)
    if endpoint.tls:
        _configure_tls(client, cfg)
    password = resolve_password(cfg)
    if password:  # read from a file or the environment: not among the config's own secrets
        register_secret(password)
    if endpoint.username is not None:
        client.username_pw_set(endpoint.username, password)
    return client


def _configure_tls(client: mqtt.Client, cfg: MqttSection) -> None:
    for name in ("ca_file", "cert_file", "key_file"):
        path = getattr(cfg, name)
        if path is not None and not path.is_file():
            raise ConfigError(f"mqtt.{name}: {path} does not exist or is not a file")
    try:
        client.tls_set(
            ca_certs=str(cfg.ca_file) if cfg.ca_file else None,
            certfile=str(cfg.cert_file) if cfg.cert_file else None,
            keyfile=str(cfg.key_file) if cfg.key_file else None,
        )
    except (ssl.SSLError, ValueError) as exc:
        raise ConfigError(f"mqtt: cannot load the TLS files (ca/cert/key): {exc}") from None
    if cfg.tls_insecure:
        log.warning("mqtt.tls_insecure: broker host name is NOT verified")
        client.tls_insecure_set(True)


def connect_options(
    cfg: MqttSection, version: MQTTProtocolVersion, persistent: bool
) -> dict[str, Any]:
    """Arguments of paho's connect(): MQTT 5 asks for the session in CONNECT (clean start,
    session expiry); 3.1.1 has the clean-session flag, set on the client (use_version)."""
    options: dict[str, Any] = {"keepalive": cfg.keepalive_s}
    if version == V5:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = cfg.session_expiry_s if persistent else 0
        options.update(clean_start=not persistent, properties=props)
    return options


def use_version(client: mqtt.Client, version: MQTTProtocolVersion, persistent: bool) -> None:
    """Switch an unconnected client between MQTT 5 and 3.1.1, keeping what it holds.

    paho takes the version in its constructor only, but switches it in place itself when a
    3.1.1 broker refuses (Client._handle_connack falls back to 3.1). A new Client would drop
    the messages paho holds without a PUBACK, which must be re-sent after the change. These
    are the two attributes the constructor derives from `protocol` and `clean_session`;
    tests/sinks/mqtt/test_protocol.py checks the result on the wire.
    """
    client._protocol = version
    client._clean_session = not persistent


def use_client_id(client: mqtt.Client, client_id: str) -> None:
    """The client id of the next CONNECT. paho takes it in its constructor only, but replaces it
    in place itself when a 3.1.1 broker rejects an empty one (Client._handle_connack)."""
    client._client_id = client_id.encode()


def disconnect_with_will(client: mqtt.Client) -> None:
    """Leave so that the broker publishes the Last Will (`offline`, retained).

    MQTT 5 has a DISCONNECT reason for it (0x04). In 3.1.1 every DISCONNECT discards the Will,
    so the connection is closed without one; disconnect() then only stops paho reconnecting.
    """
    if client.protocol == V5:
        client.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT, identifier=4))
        return
    sock = client.socket()
    if isinstance(sock, socket.socket):  # ssl.SSLSocket too
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
    client.disconnect()


def set_reconnect_delay(client: mqtt.Client, seconds: float) -> None:
    """paho doubles its own delay without jitter; pin min=max to our jittered value instead."""
    # paho annotates int but sleeps with float precision; sub-second delays matter on a LAN.
    client.reconnect_delay_set(cast(int, seconds), cast(int, seconds))


def why(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def reason_text(reason: Any) -> str:
    return str(reason) if reason is not None else "unknown"
