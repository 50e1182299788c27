"""Which broker node, in which MQTT version: the connection side of the sink, watch and doctor.

`mqtt.url` may list the nodes of one clustered broker (EMQX, HiveMQ, VerneMQ, RabbitMQ). The
first connection tries them in order until one accepts. When a connection is lost, or an
attempt fails, the next attempt goes to the next node (wrapping around) after the usual
jittered backoff, so a dead node costs one attempt and a fleet does not move in lock-step.
There is no failing back: a device stays on the node that works until that one fails too.

The same paho client moves between nodes, so the messages it holds without a PUBACK are sent
again to the new node (paho re-sends its in-flight QoS 1/2 messages after every CONNACK,
whatever the node): the outbox guarantee holds across a node change, and a duplicate keeps
its (run_id, seq). A new client would drop them: a node that dies with messages in flight
PUBACKs none of them.

`mqtt.protocol = "auto"` starts with MQTT 5. A broker that speaks only 3.1.1 either closes the
connection without a CONNACK (RabbitMQ 3.x: its parser cannot read a v5 CONNECT) or answers
"unsupported protocol version". One attempt cannot tell the first from a plain TCP server
that closes, so the same node is asked again at once in 3.1.1: if it accepts, the run uses
3.1.1 from then on (logged once); if not, the version was not the cause. The first CONNACK
settles the version for the run.

The first round runs in the caller's thread, driving paho's loop itself: TLS errors keep their
details, and a refusal that retrying cannot fix is a SinkError at start-up. After it, paho's
network thread reconnects and these callbacks choose where.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from edgecam.config.mqtt import Endpoint, MqttSection
from edgecam.errors import SinkError
from edgecam.sinks.mqtt_client import (
    FATAL_CONNACK,
    UNSUPPORTED_VERSION,
    V5,
    V311,
    VERSION_NAMES,
    VERSIONS,
    Backoff,
    build_client,
    connect_options,
    describe,
    disconnect_with_will,
    reason_text,
    set_reconnect_delay,
    use_client_id,
    use_version,
    why,
)

log = logging.getLogger(__name__)

#: unreachable: retry later; refused: retrying cannot fix it anywhere (credentials, TLS trust);
#: broken: this address does not speak MQTT as configured (TLS port, wrong version).
ProblemKind = Literal["unreachable", "refused", "broken"]
Wrapper = Callable[[Callable[..., None]], Callable[..., None]]
NO_CONNACK = "it closed the connection on an MQTT 5 CONNECT, without a CONNACK"
UNSUPPORTED = "CONNACK: unsupported protocol version"


@dataclass(frozen=True)
class NodeProblem:
    """Why one node did not accept the connection."""

    where: str
    problem: str
    kind: ProblemKind
    hint: str | None = None
    v5_refused: str | None = None  # an MQTT 5 attempt ended as a 3.1.1-only broker ends it

    def line(self) -> str:
        return f"{self.where}: {self.problem}"


def _unchanged(callback: Callable[..., None]) -> Callable[..., None]:
    return callback


def _closed_early_hint(endpoint: Endpoint, version: MQTTProtocolVersion | None) -> str:
    """A connection closed before CONNACK: what most likely did it, for this URL and version."""
    if endpoint.tls:
        return "does the broker need a client certificate (mqtt.cert_file)?"
    if version == V5:
        return (
            "a broker that speaks only MQTT 3.1.1 does that (RabbitMQ 3.x, Mosquitto 1.4):"
            ' set mqtt.protocol = "auto" (or "3.1.1"); else it may be a TLS port: use mqtts://'
        )
    return "is it a TLS port (use mqtts://), or no MQTT broker at all?"


class NodeLink:
    """One paho client, moved between the configured nodes; see the module docstring.

    `on_up(client, session_present)` runs on every accepted connection, `on_down()` when an
    accepted connection is lost; both in paho's network thread (the caller's during start()).
    `fresh_ids` (subscribers with a clean session, which have nothing to resume) connects each
    time under a new client id, `<client_id>-<attempt>`: a broker that keeps state per client
    id on one node (RabbitMQ 3.x: the subscription queue, named after the id) refuses that id
    while the node is down, measured in test_cluster.py.
    """

    def __init__(
        self,
        cfg: MqttSection,
        *,
        client_id: str,
        status_topic: str | None,
        persistent: bool,
        lost_note: str = "",
        fresh_ids: bool = False,
        wrap: Wrapper = _unchanged,
    ) -> None:
        self.cfg = cfg
        self.endpoints = cfg.endpoints()
        self.persistent = persistent
        self.lost_note = lost_note
        self.index = 0
        self.version = VERSIONS.get(cfg.protocol, V5)
        self.settled = cfg.protocol != "auto"
        self.backoff = Backoff(cfg.reconnect_min_s, cfg.reconnect_max_s)
        self.on_up: Callable[[mqtt.Client, bool], None] = lambda _c, _s: None
        self.on_down: Callable[[], None] = lambda: None
        self.failovers = 0  # accepted connections to another node than the one before
        self.attempts = 0  # connection attempts made (CONNECTs tried), the first one included
        self.v5_refusal: str | None = None  # why "auto" uses 3.1.1
        self._cond = threading.Condition()
        self._connected = False
        self._answer: ReasonCode | None = None  # this attempt's CONNACK
        self._closed = False  # this attempt's connection ended
        self._background = False
        self._stopping = False
        self._last_node: int | None = None
        self._base_id = client_id if fresh_ids else None
        self.client = build_client(
            cfg,
            self.endpoints[0],
            client_id=client_id,
            status_topic=status_topic,
            version=self.version,
            persistent=persistent,
        )
        self.client.on_pre_connect = wrap(self._on_pre_connect)
        self.client.on_connect = wrap(self._on_connect)
        self.client.on_disconnect = wrap(self._on_disconnect)
        self.client.on_connect_fail = wrap(self._on_connect_fail)

    @property
    def endpoint(self) -> Endpoint:
        return self.endpoints[self.index]

    @property
    def where(self) -> str:
        """The node in use (or tried next), as a URL."""
        return describe(self.endpoint)

    @property
    def connected(self) -> bool:
        with self._cond:
            return self._connected

    @property
    def protocol(self) -> str:
        """The version in use, "5" or "3.1.1" (under "auto", settled by the first CONNACK)."""
        return VERSION_NAMES[self.version]

    # -- the first round, in the caller's thread ------------------------------------------

    def start(self, *, unreachable_ok: bool) -> bool:
        """Try each node once, in order. True once one accepted (paho's thread keeps the
        connection from then on); False when none answered and `unreachable_ok` (retrying in
        the background). SinkError when a node refused for a reason retrying cannot fix
        (credentials, TLS trust), or no node is merely unreachable (each one answered, but not
        as the MQTT broker configured), or none accepted and not `unreachable_ok`."""
        problems: list[NodeProblem] = []
        for attempt in range(len(self.endpoints)):
            if attempt:
                self.index = (self.index + 1) % len(self.endpoints)
            problem = self._try_node()
            if problem is None:
                for earlier in problems:
                    log.warning("MQTT %s; using %s instead", earlier.line(), self.where)
                self._to_background()
                return True
            if problem.kind == "refused":
                self._give_up([problem])
            problems.append(problem)
        if not unreachable_ok or all(p.kind != "unreachable" for p in problems):
            self._give_up(problems)  # with some node merely unreachable, that one may come up
        summary = "; ".join(p.line() for p in problems)
        log.warning("MQTT broker unreachable (%s): buffering in the outbox, retrying", summary)
        self._aim(self._next_node(), 0.0)
        self._to_background()
        return False

    def _try_node(self) -> NodeProblem | None:
        problem = self._attempt()
        if problem is None or not (problem.v5_refused and self._may_fall_back()):
            return problem
        self._switch(V311)
        self.v5_refusal = problem.v5_refused
        retried = self._attempt()
        if retried is None:
            return None
        self._switch(V5)
        self.v5_refusal = None
        if problem.kind == retried.kind == "broken" and retried.problem == problem.problem:
            both = f"{problem.problem}, in MQTT 5 and in 3.1.1"
            return NodeProblem(problem.where, both, "broken", problem.hint)
        return retried

    def _attempt(self) -> NodeProblem | None:
        """One synchronous attempt on the current node; None if it accepted."""
        endpoint, where = self.endpoint, self.where
        options = connect_options(self.cfg, self.version, self.persistent)
        with self._cond:
            self._answer, self._closed = None, False
        try:
            self.client.connect(endpoint.host, endpoint.port, **options)
        except ssl.SSLCertVerificationError as exc:
            fix = "set mqtt.ca_file to the CA that signed the broker's certificate"
            return NodeProblem(
                where, f"TLS certificate verification failed: {exc.verify_message}", "refused", fix
            )
        except ssl.SSLError as exc:
            return NodeProblem(
                where, f"TLS handshake failed: {exc.reason or exc}", "broken", "is it a TLS port?"
            )
        except OSError as exc:  # refused, timed out, no route, DNS not ready yet
            if endpoint.tls and isinstance(exc, ConnectionResetError):
                # A listening port that resets our TLS ClientHello does not speak TLS.
                problem = "TLS handshake failed: connection reset"
                return NodeProblem(where, problem, "broken", "is it a TLS port?")
            return NodeProblem(where, f"cannot reach the MQTT broker: {why(exc)}", "unreachable")
        answer, closed = self._await_answer()
        if answer is None:
            if not closed:
                timeout = self.cfg.connect_timeout_s
                return NodeProblem(where, f"no answer (CONNACK) within {timeout} s", "unreachable")
            named = f" (MQTT {self.protocol})" if self.settled else ""
            return NodeProblem(
                where,
                f"the broker closed the connection before accepting it{named}",
                "broken",
                _closed_early_hint(endpoint, self.version if self.settled else None),
                v5_refused=NO_CONNACK if self.version == V5 else None,
            )
        if not answer.is_failure:
            return None
        if answer.value in FATAL_CONNACK:
            v5_refused = answer.value == UNSUPPORTED_VERSION
            return NodeProblem(
                where,
                f"broker refused the connection: {FATAL_CONNACK[answer.value]}",
                "broken" if v5_refused else "refused",
                'set mqtt.protocol = "auto" or "3.1.1"' if v5_refused else None,
                v5_refused=UNSUPPORTED if v5_refused else None,
            )
        return NodeProblem(where, f"broker refused the connection: {answer}", "unreachable")

    def _await_answer(self) -> tuple[ReasonCode | None, bool]:
        """Run paho's loop here until the CONNACK, the end of the connection, or the timeout."""
        deadline = time.monotonic() + self.cfg.connect_timeout_s
        while (left := deadline - time.monotonic()) > 0:
            rc = self.client.loop(min(0.05, left))
            with self._cond:
                if self._answer is not None or self._closed:
                    return self._answer, self._closed
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return None, True
        return None, False

    def _give_up(self, problems: list[NodeProblem]) -> None:
        self.stop()
        worst = next((p for p in problems if p.kind != "unreachable"), problems[0])
        if len(problems) == 1:
            raise SinkError(worst.line(), worst.hint)
        lines = "; ".join(p.line() for p in problems)
        raise SinkError(f"no broker node accepted the connection: {lines}", worst.hint)

    def _to_background(self) -> None:
        self._background = True
        self.client.loop_start()

    # -- paho's network thread --------------------------------------------------------------

    def _on_pre_connect(self, client: mqtt.Client, _u: Any) -> None:
        with self._cond:
            self._answer, self._closed = None, False
            self.attempts += 1
        if self._base_id is not None:
            use_client_id(client, f"{self._base_id}-{self.attempts}")

    def _on_connect(self, client: mqtt.Client, _u: Any, flags: Any, reason: Any, _p: Any) -> None:
        with self._cond:
            self._answer = reason
            self._cond.notify_all()
        if reason.is_failure:
            if self._background and not self._refuses_v5(reason):
                log.error("MQTT broker %s refused the connection: %s", self.where, reason)
            return  # paho closes the connection next: _on_disconnect picks the next attempt
        self._settle()
        self.backoff.reset()
        set_reconnect_delay(client, self.backoff.next())
        self.failovers += self._last_node is not None and self._last_node != self.index
        self._last_node = self.index
        with self._cond:
            self._connected = True
        log.info(
            "MQTT connected to %s (MQTT %s, session present: %s)",
            self.where,
            self.protocol,
            flags.session_present,
        )
        self.on_up(client, bool(flags.session_present))

    def _on_disconnect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        with self._cond:
            was_up, self._connected = self._connected, False
            answer, self._closed = self._answer, True
            self._cond.notify_all()
        if not self._background or self._stopping:
            return  # start() reads the outcome itself; stop() wants no new attempt
        if was_up:
            self.on_down()
        refused_v5 = answer is None or self._refuses_v5(answer)
        if not was_up and refused_v5 and self._may_fall_back():
            self._switch(V311)
            self.v5_refusal = NO_CONNACK if answer is None else UNSUPPORTED
            log.debug("MQTT %s: no CONNACK to MQTT 5; asking again in 3.1.1", self.where)
            self._aim(self.index, 0.0)  # the same attempt, in the other version: at once
            return
        self._retry_elsewhere(client, reason if was_up else None)

    def _on_connect_fail(self, client: mqtt.Client, _u: Any) -> None:
        if not self._stopping:
            self._retry_elsewhere(client, None)

    def _retry_elsewhere(self, client: mqtt.Client, lost: Any) -> None:
        if self.version == V311 and not self.settled:
            self._switch(V5)  # 3.1.1 did not help either: not a version matter
        left = self.where
        delay = self.backoff.next()
        self._aim(self._next_node(), delay)
        if lost is not None:
            log.warning(
                "MQTT connection to %s lost (%s)%s; next attempt: %s in %.1f s",
                left,
                reason_text(lost),
                f": {self.lost_note}" if self.lost_note else "",
                self.where,
                delay,
            )
        else:
            log.debug("MQTT attempt on %s failed; next: %s in %.2f s", left, self.where, delay)

    # -- shared -----------------------------------------------------------------------------

    def _next_node(self) -> int:
        return (self.index + 1) % len(self.endpoints)

    def _aim(self, index: int, delay: float) -> None:
        """The next attempt: node `index`, after `delay` seconds (paho's thread makes it)."""
        self.index = index
        endpoint = self.endpoint
        set_reconnect_delay(self.client, delay)
        options = connect_options(self.cfg, self.version, self.persistent)
        self.client.connect_async(endpoint.host, endpoint.port, **options)

    def _may_fall_back(self) -> bool:
        return not self.settled and self.version == V5

    def _refuses_v5(self, reason: ReasonCode) -> bool:
        return self.version == V5 and reason.value == UNSUPPORTED_VERSION

    def _switch(self, version: MQTTProtocolVersion) -> None:
        self.version = version
        use_version(self.client, version, self.persistent)

    def _settle(self) -> None:
        if self.settled:
            return
        self.settled = True
        if self.version == V311:
            log.info(
                "MQTT broker %s does not speak MQTT 5 (%s) but accepted 3.1.1: this run uses"
                ' MQTT 3.1.1 (mqtt.protocol = "auto"; see docs/mqtt.md for what 3.1.1 lacks)',
                self.where,
                self.v5_refusal,
            )

    def stop(self, *, will: bool = False) -> None:
        """Disconnect and end paho's thread; with `will`, so that the Last Will fires."""
        self._stopping = True
        if will:
            disconnect_with_will(self.client)
        else:
            self.client.disconnect()
        self.client.loop_stop()
