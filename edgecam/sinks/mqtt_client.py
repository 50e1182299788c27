"""paho-mqtt 2.x client set-up and the bounded first connection attempt.

The first attempt tells apart "broker unreachable" (fine: the outbox buffers and paho keeps
retrying with our jittered backoff) from "broker or TLS refused us" (wrong password, not
authorised, certificate not trusted): retrying cannot fix those, so they are a SinkError at
start-up instead of a silent retry loop.
"""

from __future__ import annotations

import logging
import random
import ssl
import threading
from dataclasses import dataclass
from typing import Any, cast

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edgecam.config.mqtt import Endpoint, MqttSection, resolve_password
from edgecam.errors import ConfigError, SinkError
from edgecam.logsetup import register_secret

log = logging.getLogger(__name__)

# CONNACK reason codes that retrying cannot fix (MQTT 5 spec 3.2.2.2).
FATAL_CONNACK = {
    0x84: "the broker does not support MQTT v5",
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


@dataclass
class FirstOutcome:
    """Filled by the callbacks while the first attempt is under way."""

    event: threading.Event
    reason: ReasonCode | None = None
    closed: bool = False


def describe(endpoint: Endpoint) -> str:
    scheme = "mqtts" if endpoint.tls else "mqtt"
    host = f"[{endpoint.host}]" if ":" in endpoint.host else endpoint.host
    return f"{scheme}://{host}:{endpoint.port}"


def build_client(
    cfg: MqttSection, endpoint: Endpoint, *, client_id: str, status_topic: str | None
) -> mqtt.Client:
    """A configured but unconnected client: MQTT v5, persistent session, Last Will, TLS, auth."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=MQTTProtocolVersion.MQTTv5,
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


def connect_properties(session_expiry_s: int) -> Properties:
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = session_expiry_s
    return props


def set_reconnect_delay(client: mqtt.Client, seconds: float) -> None:
    """paho doubles its own delay without jitter; pin min=max to our jittered value instead."""
    # paho annotates int but sleeps with float precision; sub-second delays matter on a LAN.
    client.reconnect_delay_set(cast(int, seconds), cast(int, seconds))


def first_connect(
    client: mqtt.Client,
    cfg: MqttSection,
    endpoint: Endpoint,
    outcome: FirstOutcome,
    *,
    persistent: bool = True,
    unreachable_ok: bool = True,
) -> bool:
    """Start the network loop; True if connected now, False if unreachable (retrying in background).

    Raises SinkError when the broker or TLS refuses us for a reason retrying cannot fix, and
    also for an unreachable broker unless `unreachable_ok` (a publisher has its outbox).
    """
    where = describe(endpoint)
    options: dict[str, Any] = {
        "keepalive": cfg.keepalive_s,
        "clean_start": not persistent,
        "properties": connect_properties(cfg.session_expiry_s if persistent else 0),
    }
    try:
        client.connect(endpoint.host, endpoint.port, **options)
    except ssl.SSLCertVerificationError as exc:
        raise SinkError(
            f"{where}: TLS certificate verification failed: {exc.verify_message}",
            "set mqtt.ca_file to the CA that signed the broker's certificate",
        ) from None
    except ssl.SSLError as exc:
        raise SinkError(
            f"{where}: TLS handshake failed: {exc.reason or exc}", "is it a TLS port?"
        ) from None
    except OSError as exc:  # refused, timed out, no route, DNS not ready yet
        if endpoint.tls and isinstance(exc, ConnectionResetError):
            # A listening port that resets our TLS ClientHello does not speak TLS.
            raise SinkError(
                f"{where}: TLS handshake failed: connection reset", "is it a TLS port?"
            ) from None
        if not unreachable_ok:
            raise SinkError(f"{where}: cannot reach the MQTT broker: {_why(exc)}") from None
        log.warning(
            "MQTT broker %s unreachable (%s): buffering in the outbox, retrying", where, _why(exc)
        )
        client.connect_async(endpoint.host, endpoint.port, **options)
        client.loop_start()
        return False
    client.loop_start()
    if not outcome.event.wait(cfg.connect_timeout_s):
        if not unreachable_ok:
            _stop(client)
            raise SinkError(f"{where}: no answer (CONNACK) within {cfg.connect_timeout_s} s")
        log.warning("MQTT broker %s sent no CONNACK within %.1f s", where, cfg.connect_timeout_s)
        return False
    reason = outcome.reason
    if reason is None:  # TCP accepted, then closed without a CONNACK: a protocol mismatch
        _stop(client)
        hint = "plain mqtt:// to a TLS port?" if not endpoint.tls else "client certificate needed?"
        raise SinkError(f"{where}: the broker closed the connection before accepting it", hint)
    if (
        reason is not None
        and reason.is_failure
        and (reason.value in FATAL_CONNACK or not unreachable_ok)
    ):
        _stop(client)
        problem = FATAL_CONNACK.get(reason.value, str(reason))
        raise SinkError(f"{where}: broker refused the connection: {problem}")
    return reason is not None and not reason.is_failure


def _why(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _stop(client: mqtt.Client) -> None:
    client.disconnect()
    client.loop_stop()


def reason_text(reason: Any) -> str:
    return str(reason) if reason is not None else "unknown"
