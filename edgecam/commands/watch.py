"""`edgecam watch`: the subscriber side of the contract, live from one device or all of them.

Uses only the typed parser (edgecam.schema), exactly as a third-party subscriber would, and
reports gaps and duplicates in each device's `seq` so delivery problems are visible. Given the
nodes of a clustered broker (`--mqtt URL,URL,...`), it moves to the next node when the one it
reads from is lost, subscribes again there, and goes on.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import queue
import sys
import threading
import time
import uuid
from collections import OrderedDict
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import paho.mqtt.client as mqtt

from edgecam.config import read_toml
from edgecam.config.mqtt import MqttSection, validate_mqtt, with_url
from edgecam.errors import EXIT_FAILURE, EXIT_OK, SinkError, UsageError
from edgecam.logsetup import printable
from edgecam.schema import (
    DEVICE_ID_RULE,
    ClassificationMessage,
    CountMessage,
    DetectionsMessage,
    EventMessage,
    Message,
    PayloadError,
    SnapshotMessage,
    StatsMessage,
    StatusMessage,
    is_device_id,
    parse_message,
    parse_topic,
    read_json,
)
from edgecam.sinks.mqtt_nodes import NodeLink

KINDS = ("detections", "classification", "events", "status", "stats", "count")
#: Messages waiting to be printed; beyond this (a flood faster than the terminal) they are
#: counted and dropped instead of growing memory without bound.
INBOX_LIMIT = 1000
#: (device, run, stream) keys remembered for gap/duplicate detection; the oldest go first.
SEQ_KEYS_LIMIT = 10_000
LABEL_WIDTH = 40  # a longer label is cut (with …) so one message cannot flood the terminal
DEFAULT_KINDS = "detections,classification,events,status"
HEADER = (
    f"{'TIME':<12}  {'DEVICE':<14} {'SEQ':>6}  {'KIND':<14} {'LABEL':<18} {'SCORE':>5}  BOX (px)"
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "watch",
        help="print live detections/events published over MQTT by one or all devices",
        description="Subscribe to <prefix>/<device>/... and print each message as a table row "
        "or a JSON line. Gaps and duplicates in seq are reported on stderr.",
    )
    parser.add_argument(
        "--mqtt",
        metavar="URL[,URL...]",
        help="broker, or the nodes of a clustered broker in a comma list"
        " (default: [mqtt] of --config, else mqtt://localhost)",
    )
    parser.add_argument(
        "--config", "-c", type=Path, help="read [mqtt] from this edgecam config file"
    )
    parser.add_argument("--device", default="+", help="device id, or + for all devices (default)")
    parser.add_argument("--prefix", help="topic prefix (default: edgecam)")
    parser.add_argument("--kinds", default=DEFAULT_KINDS, help=f"comma list of {','.join(KINDS)}")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--count", type=int, help="exit after N messages (status not counted)")
    parser.add_argument(
        "--timeout", type=float, help="exit after S seconds (status 1 if --count not reached)"
    )
    auth = parser.add_argument_group(
        "authentication (a password is never taken on the command line)"
    )
    auth.add_argument("--username")
    auth.add_argument("--password-file", type=Path)
    auth.add_argument(
        "--password-env", metavar="NAME", help="environment variable holding the password"
    )
    auth.add_argument("--ca-file", type=Path, help="CA certificate for mqtts://")
    auth.add_argument("--insecure", action="store_true", help="do not verify the broker host name")
    parser.set_defaults(handler=watch_command)


def _config_table(args: argparse.Namespace) -> dict[str, Any]:
    table: dict[str, Any] = {}
    if args.config:
        raw = read_toml(args.config).get("mqtt", {})
        table = dict(raw) if isinstance(raw, dict) else {}
    if args.password_file or args.password_env:
        for key in ("password", "password_file", "password_env"):
            table.pop(key, None)
    flags = {
        "username": args.username,
        "password_file": args.password_file,
        "password_env": args.password_env,
        "ca_file": args.ca_file,
        "topic_prefix": args.prefix,
        "tls_insecure": True if args.insecure else None,
    }
    table.update({k: v for k, v in flags.items() if v is not None})
    if args.mqtt or not (table.get("url") or table.get("host")):
        table = with_url(table, args.mqtt or "mqtt://localhost")
    return table


def _filters(prefix: str, device: str, kinds_arg: str) -> list[str]:
    kinds = [k.strip() for k in kinds_arg.split(",") if k.strip()]
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown or not kinds:
        raise UsageError(f"--kinds {kinds_arg!r}: expected a comma list of {', '.join(KINDS)}")
    if device != "+" and not is_device_id(device):
        raise UsageError(
            f"--device {device!r}: expected + for all devices, or one device id of {DEVICE_ID_RULE}"
        )
    return [f"{prefix}/{device}/{k}" + ("/+" if k == "count" else "") for k in kinds]


def watch_command(args: argparse.Namespace) -> int:
    if args.count is not None and args.count < 1:
        raise UsageError(f"--count {args.count}: expected a positive number of messages")
    if args.timeout is not None and not 0 < args.timeout < math.inf:
        raise UsageError(f"--timeout {args.timeout}: expected a positive number of seconds")
    origin = str(args.config) if args.config else "command line"
    cfg = validate_mqtt(_config_table(args), origin)
    filters = _filters(cfg.topic_prefix, args.device, args.kinds)
    _tolerant(sys.stdout)
    inbox = Inbox(INBOX_LIMIT)
    link = _subscribe(cfg, filters, inbox)
    printer = Printer(sys.stdout, as_json=args.json)
    try:
        received = _print_loop(inbox, printer, args.count, args.timeout)
    except KeyboardInterrupt:
        return EXIT_OK
    finally:
        link.stop()
        printer.summary(inbox.overflow)
    if args.count is not None and received < args.count:
        print(
            f"edgecam watch: timed out after {args.timeout} s: {received} of {args.count} messages",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    return EXIT_OK


def _tolerant(stream: IO[str]) -> None:
    """A terminal that cannot show a character gets an escape instead of an exception."""
    if isinstance(stream, io.TextIOWrapper):
        stream.reconfigure(errors="backslashreplace")


class Inbox:
    """Messages from paho's network thread to the printing loop.

    Bounded: a flood faster than the terminal is counted in `overflow`, not queued forever.
    A topic that is not UTF-8 (paho's `msg.topic` raises on it, which would kill paho's
    thread) arrives as None, so the printer reports it like any other malformed message.
    """

    def __init__(self, limit: int) -> None:
        self.queue: queue.Queue[tuple[str | None, bytes]] = queue.Queue(limit)
        self.overflow = 0  # written by paho's thread only

    def on_message(self, _client: Any, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            topic: str | None = msg.topic
        except UnicodeDecodeError:
            topic = None
        try:
            self.queue.put_nowait((topic, bytes(msg.payload)))
        except queue.Full:
            self.overflow += 1


def _subscribe(cfg: MqttSection, filters: list[str], inbox: Inbox) -> NodeLink:
    """Connect to the first node that accepts (SinkError if refused or none reachable) and
    wait for the SUBACK, then say so on stderr: a script can start publishing once that line
    appears, nothing will be missed. After a node is lost, the link moves to the next one and
    subscribes again there (a clean session: what was published meanwhile shows as missing)."""
    subscribed = threading.Event()
    link = NodeLink(
        cfg,
        client_id=f"edgecam-watch-{uuid.uuid4().hex[:8]}",
        status_topic=None,
        persistent=False,
        fresh_ids=True,
    )

    def on_up(client: mqtt.Client, _session_present: bool) -> None:
        client.subscribe([(topic, 1) for topic in filters])

    def on_subscribe(*_: Any) -> None:
        again = subscribed.is_set()
        subscribed.set()
        where = f"{link.where} (MQTT {link.protocol})"
        if again:
            _warn(f"subscribed again on {where} after losing the connection")

    link.on_up = on_up
    link.client.on_subscribe = on_subscribe
    link.client.on_message = inbox.on_message
    link.start(unreachable_ok=False)
    if not subscribed.wait(cfg.connect_timeout_s):
        link.stop()
        raise SinkError(f"{link.where}: no answer to SUBSCRIBE {', '.join(filters)}")
    print(
        f"edgecam watch: subscribed to {', '.join(filters)} on {link.where}",
        file=sys.stderr,
        flush=True,
    )
    return link


def _print_loop(
    inbox: Inbox,
    printer: Printer,
    count: int | None,
    timeout: float | None,
) -> int:
    deadline = time.monotonic() + timeout if timeout else None
    received = 0
    while count is None or received < count:
        wait = 0.5 if deadline is None else deadline - time.monotonic()
        if wait <= 0:
            break
        try:
            topic, payload = inbox.queue.get(timeout=min(wait, 0.5))
        except queue.Empty:
            continue
        received += printer.show(topic, payload)
    return received


class Printer:
    """Formats messages; tracks (device, run, stream) -> last seq to spot gaps and duplicates.

    Nothing a publisher sends can stop it: a malformed message is reported on stderr and
    counted (`skipped`), and every text that came over the wire is escaped before it reaches
    the terminal (table mode) or is JSON-escaped (--json).
    """

    def __init__(self, out: IO[str], *, as_json: bool) -> None:
        self.out = out
        self.as_json = as_json
        self.last_seq: OrderedDict[tuple[str, str, str], int] = OrderedDict()
        self.header_done = False
        self.skipped = 0

    def show(self, topic: str | None, payload: bytes) -> int:
        """Print one message; returns 1 if it counts toward --count (data, not status)."""
        if topic is None:
            self.skipped += 1
            _warn("skipped a message whose topic is not UTF-8")
            return 0
        try:
            message = parse_message(topic, payload)
        except PayloadError as exc:
            self.skipped += 1
            _warn(f"skipped a malformed message on {topic}: {exc}")
            return 0
        self._check_seq(topic, message)
        if self.as_json:
            self.out.write(
                json.dumps({"topic": topic, "message": _as_json(payload, message)}) + "\n"
            )
        else:
            self._table(topic, message)
        self.out.flush()
        return 0 if isinstance(message, StatusMessage) else 1

    def summary(self, overflow: int) -> None:
        """One closing line on stderr when anything was not printed."""
        parts = [f"{self.skipped} malformed"] if self.skipped else []
        if overflow:
            parts.append(f"{overflow} arriving faster than they could be printed")
        if parts:
            _warn(f"skipped {' and '.join(parts)} message(s) in all")

    def _check_seq(self, topic: str, message: Message) -> None:
        if not isinstance(message, DetectionsMessage | ClassificationMessage | EventMessage):
            return
        key = (message.device_id, message.run_id[:64], parse_topic(topic).kind)
        last = self.last_seq.get(key)
        if last is not None and message.seq <= last:
            _warn(f"{topic}: duplicate seq {message.seq} (QoS 1 redelivery)")
            return
        if last is not None and message.seq > last + 1:
            missing = message.seq - last - 1
            _warn(f"{topic}: {missing} message(s) missing before seq {message.seq}")
        self.last_seq[key] = message.seq
        self.last_seq.move_to_end(key)
        if len(self.last_seq) > SEQ_KEYS_LIMIT:
            self.last_seq.popitem(last=False)

    def _table(self, topic: str, message: Message) -> None:
        if not self.header_done:
            self.out.write(HEADER + "\n")
            self.header_done = True
        for row in _rows(parse_topic(topic).device_id, message):
            self.out.write(printable(row) + "\n")


def _warn(text: str) -> None:
    print(printable(f"edgecam watch: {text}"), file=sys.stderr, flush=True)


def _as_json(payload: bytes, message: Message) -> Any:
    if isinstance(message, StatusMessage):
        return "online" if message.online else "offline"
    if isinstance(message, CountMessage):
        return message.count
    if isinstance(message, SnapshotMessage):
        return {"jpeg_bytes": len(message.jpeg)}
    return read_json(payload)  # the same bounded reader that just accepted it


def _row(*cells: str) -> str:
    """TIME, DEVICE, SEQ, KIND, LABEL, SCORE, BOX; the label escaped and cut to LABEL_WIDTH."""
    clock, device, seq, kind, label, score, box = cells
    label = printable(label)
    if len(label) > LABEL_WIDTH:
        label = label[: LABEL_WIDTH - 1] + "…"
    return f"{clock:<12}  {device:<14} {seq:>6}  {kind:<14} {label:<18} {score:>5}  {box}".rstrip()


def _clock(at: datetime) -> str:
    """Local time of day; UTC where the local offset would leave the calendar (year 1, 9999)."""
    with contextlib.suppress(OverflowError, ValueError, OSError):
        at = at.astimezone()
    return at.strftime("%H:%M:%S.%f")[:12]


def _rows(device: str, message: Message) -> list[str]:
    now = time.strftime("%H:%M:%S")
    if isinstance(message, DetectionsMessage | ClassificationMessage):
        clock = _clock(message.captured_at)
        items: list[tuple[str, float, str]] = (
            [(d.label, d.score, "{},{} {},{}".format(*_px(d.box_px))) for d in message.detections]
            if isinstance(message, DetectionsMessage)
            else [(c.label, c.score, "") for c in message.classification]
        )
        kind = "detection" if isinstance(message, DetectionsMessage) else "class"
        if not items:
            return [_row(clock, device, str(message.seq), kind, "-", "", "")]
        return [
            _row(clock, device, str(message.seq), kind, lab, f"{s:.2f}", box)
            for lab, s, box in items
        ]
    if isinstance(message, EventMessage):
        clock = _clock(message.last_seen_at)
        extra = f" {message.duration_s:.1f}s zones={','.join(message.zones) or '-'}"
        box = "{},{} {},{}".format(*_px(message.box_px)) + extra
        return [
            _row(
                clock,
                device,
                str(message.seq),
                f"event:{message.event}",
                message.label,
                f"{message.best_score:.2f}",
                box,
            )
        ]
    if isinstance(message, StatusMessage):
        return [_row(now, device, "", "status", "online" if message.online else "offline", "", "")]
    if isinstance(message, CountMessage):
        return [_row(now, device, "", "count", f"{message.label}={message.count}", "", "")]
    if isinstance(message, StatsMessage):
        m = message.mqtt
        text = f"outbox={m.outbox_depth} dropped={m.messages_dropped} cpu={message.cpu_percent}%"
        return [_row(now, device, "", "stats", m.state, "", text)]
    return [_row(now, device, "", "snapshot", message.label, "", f"{len(message.jpeg)} bytes")]


def _px(box: Any) -> tuple[int, int, int, int]:
    return box.xmin, box.ymin, box.xmax, box.ymax
