"""The subscriber-side parser: MQTT topic + payload -> frozen dataclasses, or PayloadError.

Third parties import this module to turn a message into frozen dataclasses; it imports only
the standard library (no numpy, no OpenCV, no paho). A malformed payload raises PayloadError
naming the first bad field. Unknown extra fields are ignored (tolerant reader); the JSON Schema
files next to this module describe exactly what schema version 1 producers emit.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from importlib import resources
from typing import Any

from edgecam.schema._reader import MAX_JSON_BYTES, Obj, PayloadError, read_json
from edgecam.schema.messages import (
    BestObservation,
    Box,
    ClassificationMessage,
    ClassScore,
    CountMessage,
    Detection,
    DetectionsMessage,
    EventMessage,
    Execution,
    ExecutionTrial,
    Message,
    PixelBox,
    PublisherStats,
    SnapshotMessage,
    StatsMessage,
    StatusMessage,
    Topic,
)

SCHEMA_VERSION = 1
SCHEMA_NAMES = ("detections", "classification", "events", "stats", "status")
TOPIC_KINDS = ("status", "detections", "classification", "stats", "events", "count", "snapshot")
EVENT_REASONS = ("confirmed", "entered_zone", "left_zone", "better_score", "gone", "shutdown")
#: Largest snapshot accepted: a JPEG of snapshots.max_size (at most 8192 px) fits easily.
MAX_SNAPSHOT_BYTES = 64 << 20
#: The one device-id rule, shared by producers, the config, `--device-id` and subscribers: one
#: MQTT topic level that needs no escaping anywhere (topics, client ids, file names).
DEVICE_ID_RULE = "1-64 characters from A-Z a-z 0-9 _ . -"
_DEVICE_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_COUNT = re.compile(r"[0-9]{1,18}")  # ASCII digits only: str.isdigit() also accepts '²'
_MAX_TOPIC_BYTES = 65535  # MQTT's limit on a topic name
_NOT_IN_TOPIC = re.compile("[+#\\x00\\ud800-\\udfff]")  # wildcards, NUL, lone surrogates


def is_device_id(value: str) -> bool:
    """True if `value` follows DEVICE_ID_RULE."""
    return _DEVICE_ID.fullmatch(value) is not None


def parse_topic(topic: str) -> Topic:
    """`<prefix>/<device_id>/<kind>[/<label>]`, or PayloadError; the device id follows the rule."""
    shown = repr(topic[:120])
    if len(topic.encode("utf-8", "surrogatepass")) > _MAX_TOPIC_BYTES:
        raise PayloadError("(topic)", f"{shown}...: longer than MQTT's {_MAX_TOPIC_BYTES} bytes")
    if _NOT_IN_TOPIC.search(topic):
        raise PayloadError("(topic)", f"{shown} is not an MQTT topic name")
    parts = topic.split("/")
    if len(parts) >= 4 and parts[-2] in ("count", "snapshot"):
        where = Topic("/".join(parts[:-3]), parts[-3], parts[-2], parts[-1])
    elif len(parts) >= 3 and parts[-1] in TOPIC_KINDS:
        where = Topic("/".join(parts[:-2]), parts[-2], parts[-1])
    else:
        kinds = ", ".join(TOPIC_KINDS)
        raise PayloadError(
            "(topic)", f"{shown} is not <prefix>/<device_id>/<kind>, kind one of {kinds}"
        )
    if not is_device_id(where.device_id):
        raise PayloadError("(topic)", f"device id {where.device_id[:80]!r} is not {DEVICE_ID_RULE}")
    if where.label == "":
        raise PayloadError("(topic)", f"{shown}: empty label level")
    return where


def json_schema(name: str) -> dict[str, Any]:
    """The shipped JSON Schema (draft 2020-12) of one message kind, e.g. 'detections'."""
    if name not in SCHEMA_NAMES:
        raise ValueError(f"unknown schema {name!r}: expected one of {', '.join(SCHEMA_NAMES)}")
    text = (
        resources.files("edgecam.schema")
        .joinpath(f"{name}.schema.json")
        .read_text(encoding="utf-8")
    )
    schema: dict[str, Any] = json.loads(text)
    return schema


def _load(payload: bytes | str | Mapping[str, Any]) -> Obj:
    """A Mapping is taken as already decoded; text goes through the bounded JSON reader."""
    if isinstance(payload, Mapping):
        return Obj(payload)
    return Obj(read_json(payload))


def _envelope(obj: Obj, kind: str) -> int:
    version = obj.integer("schema", minimum=1)
    if version > SCHEMA_VERSION:
        raise PayloadError(
            "schema",
            f"version {version} is newer than this parser's {SCHEMA_VERSION}; upgrade edgecam",
        )
    if kind:
        obj.string("type", choices=(kind,))
    return version


def _box(obj: Obj) -> Box:
    return Box(*(obj.number(k, minimum=0.0, maximum=1.0) for k in ("xmin", "ymin", "xmax", "ymax")))


def _box_px(obj: Obj) -> PixelBox:
    return PixelBox(*(obj.integer(k, minimum=0) for k in ("xmin", "ymin", "xmax", "ymax")))


def _detection(obj: Obj) -> Detection:
    return Detection(
        label=obj.string("label"),
        class_id=obj.integer("class_id", minimum=0),
        score=obj.number("score", minimum=0.0, maximum=1.0),
        box=_box(obj.obj("box")),
        box_px=_box_px(obj.obj("box_px")),
    )


def _class_score(obj: Obj) -> ClassScore:
    return ClassScore(
        obj.string("label"),
        obj.integer("class_id", minimum=0),
        obj.number("score", minimum=0.0, maximum=1.0),
    )


def _frame_fields(obj: Obj, kind: str) -> dict[str, Any]:
    """Read in document order, so the first bad field reported is the first one in the payload."""
    fields: dict[str, Any] = {
        "schema": _envelope(obj, kind),
        "device_id": obj.string("device_id", min_len=1),
        "run_id": obj.string("run_id", min_len=1),
        "seq": obj.integer("seq", minimum=0),
        "frame_seq": obj.integer("frame_seq", minimum=0),
        "model": obj.string("model", min_len=1),
        "source": obj.string("source"),
        "captured_at": obj.timestamp("captured_at"),
        "captured_ms": obj.integer("captured_ms", minimum=0),
    }
    frame = obj.obj("frame")
    fields["width"] = frame.integer("width", minimum=1)
    fields["height"] = frame.integer("height", minimum=1)
    latency = obj.obj("latency_ms")
    fields["inference_ms"] = latency.number("inference", minimum=0.0)
    fields["end_to_end_ms"] = latency.optional_number("end_to_end", minimum=0.0)
    fields["timings_ms"] = obj.number_map("timings_ms")
    return fields


def parse_detections(payload: bytes | str | Mapping[str, Any]) -> DetectionsMessage:
    """A `<prefix>/<device>/detections` message."""
    obj = _load(payload)
    fields = _frame_fields(obj, "detections")
    dets = tuple(_detection(Obj(element, path)) for path, element in obj.items("detections"))
    return DetectionsMessage(**fields, detections=dets)


def parse_classification(payload: bytes | str | Mapping[str, Any]) -> ClassificationMessage:
    """A `<prefix>/<device>/classification` message (top-k, best first)."""
    obj = _load(payload)
    fields = _frame_fields(obj, "classification")
    top = tuple(_class_score(Obj(element, path)) for path, element in obj.items("classification"))
    return ClassificationMessage(**fields, classification=top)


def _best(obj: Obj) -> BestObservation:
    return BestObservation(
        frame_seq=obj.integer("frame_seq", minimum=0),
        time=obj.number("time", minimum=0.0),
        time_at=obj.timestamp("time_at"),
        score=obj.number("score", minimum=0.0, maximum=1.0),
        box=_box(obj.obj("box")),
        box_px=_box_px(obj.obj("box_px")),
    )


def _reasons(obj: Obj) -> tuple[str, ...]:
    reasons = obj.strings("reasons")
    for i, reason in enumerate(reasons):
        if reason not in EVENT_REASONS:
            raise PayloadError(f"reasons[{i}]", f"expected one of {', '.join(EVENT_REASONS)}")
    return reasons


def parse_event(payload: bytes | str | Mapping[str, Any]) -> EventMessage:
    """A `<prefix>/<device>/events` message."""
    obj = _load(payload)
    return EventMessage(
        schema=_envelope(obj, "event"),
        device_id=obj.string("device_id", min_len=1),
        run_id=obj.string("run_id", min_len=1),
        seq=obj.integer("seq", minimum=0),
        model=obj.string("model", min_len=1),
        event=obj.string("event", choices=("new", "update", "end")),  # type: ignore[arg-type]
        event_id=obj.string("event_id", min_len=1),
        frame_seq=obj.integer("frame_seq", minimum=0),
        track_id=obj.string("track_id", min_len=1),
        label=obj.string("label"),
        class_id=obj.integer("class_id", minimum=0),
        score=obj.number("score", minimum=0.0, maximum=1.0),
        best_score=obj.number("best_score", minimum=0.0, maximum=1.0),
        first_seen=obj.number("first_seen", minimum=0.0),
        first_seen_at=obj.timestamp("first_seen_at"),
        last_seen=obj.number("last_seen", minimum=0.0),
        last_seen_at=obj.timestamp("last_seen_at"),
        duration_s=obj.number("duration_s", minimum=0.0),
        width=obj.obj("frame").integer("width", minimum=1),
        height=obj.obj("frame").integer("height", minimum=1),
        box=_box(obj.obj("box")),
        box_px=_box_px(obj.obj("box_px")),
        zones=obj.strings("zones"),
        entered=obj.strings("entered"),
        left=obj.strings("left"),
        reasons=_reasons(obj),
        best=_best(obj.obj("best")),
    )


HEALTH = ("ok", "degraded", "failed")


def parse_stats(payload: bytes | str | Mapping[str, Any]) -> StatsMessage:
    """The retained `<prefix>/<device>/stats` message."""
    obj = _load(payload)
    return StatsMessage(
        schema=_envelope(obj, "stats"),
        device_id=obj.string("device_id", min_len=1),
        run_id=obj.string("run_id", min_len=1),
        model=obj.string("model", min_len=1),
        published_at=obj.timestamp("published_at"),
        published_ms=obj.integer("published_ms", minimum=0),
        uptime_s=obj.number("uptime_s", minimum=0.0),
        cpu_percent=obj.number("cpu_percent", minimum=0.0),
        rss_mb=obj.number("rss_mb", minimum=0.0),
        pipeline=dict(obj.obj("pipeline").data),
        mqtt=_publisher_stats(obj.obj("mqtt")),
        execution=_execution(obj.obj("pipeline")),
    )


def _execution(pipeline: Obj) -> Execution | None:
    """`pipeline.execution` when the producer sends it (older ones do not)."""
    if "execution" not in pipeline.data:
        return None
    ex = pipeline.obj("execution")
    threads = None if ex.get("threads") is None else ex.integer("threads", minimum=1)
    trials = []
    if "trials" in ex.data:
        for path, item in ex.items("trials"):
            trial = Obj(item, path)
            trials.append(
                ExecutionTrial(
                    trial.string("arrangement", min_len=1),
                    trial.number("fps", minimum=0.0),
                    trial.number("latency_ms", minimum=0.0),
                )
            )
    running = ex.string("running", min_len=1) if "running" in ex.data else None
    return Execution(
        mode=ex.string("mode", choices=("sequential", "pipelined")),
        threads=threads,
        chosen_by=ex.string("chosen_by", min_len=1),
        running=running,
        trials=tuple(trials),
        rechecks=ex.integer("rechecks", minimum=0) if "rechecks" in ex.data else 0,
    )


_PUBLISHER_COUNTERS = (
    "outbox_depth",
    "outbox_bytes",
    "messages_dropped",
    "messages_dropped_total",
    "messages_rejected",
    "published",
    "acked",
    "reconnects",
)


def _publisher_stats(mqtt: Obj) -> PublisherStats:
    n = {name: mqtt.integer(name, minimum=0) for name in _PUBLISHER_COUNTERS}
    data = mqtt.data
    return PublisherStats(
        state=mqtt.string("state", choices=("connected", "disconnected")),
        outbox_depth=n["outbox_depth"],
        outbox_bytes=n["outbox_bytes"],
        messages_dropped=n["messages_dropped"],
        messages_dropped_total=n["messages_dropped_total"],
        messages_rejected=n["messages_rejected"],
        published=n["published"],
        acked=n["acked"],
        reconnects=n["reconnects"],
        memory_depth=mqtt.integer("memory_depth", minimum=0) if "memory_depth" in data else 0,
        health=mqtt.string("health", choices=HEALTH) if "health" in data else "ok",
        problem=mqtt.string("problem") if data.get("problem") is not None else None,
        broker=mqtt.string("broker") if "broker" in data else None,
        protocol=mqtt.string("protocol", choices=("5", "3.1.1")) if "protocol" in data else None,
    )


def _short_text(payload: bytes | str) -> str:
    """The first characters of a plain-text payload, for matching and error messages."""
    head = payload[:64]
    return head.decode("utf-8", "replace") if isinstance(head, bytes) else head


def parse_status(payload: bytes | str) -> bool:
    """`online` -> True, `offline` -> False (the retained status / Last Will payload)."""
    text = _short_text(payload)
    if len(payload) > len("offline") or text not in ("online", "offline"):
        raise PayloadError("(payload)", f"expected 'online' or 'offline', got {text[:40]!r}")
    return text == "online"


def _parse_count(payload: bytes) -> int:
    text = _short_text(payload).strip()
    if len(payload) > 32 or not _COUNT.fullmatch(text):
        raise PayloadError("(payload)", f"expected a count like '2', got {text[:40]!r}")
    return int(text)


def parse_message(topic: str, payload: bytes) -> Message:
    """Dispatch on the topic's last level(s); raises PayloadError, and nothing else, for any
    malformed topic or payload, including one over MAX_JSON_BYTES (MAX_SNAPSHOT_BYTES for a
    snapshot)."""
    where = parse_topic(topic)
    if isinstance(payload, str):  # tolerated: paho users sometimes decode first
        payload = payload.encode("utf-8", "surrogatepass")
    limit = MAX_SNAPSHOT_BYTES if where.kind == "snapshot" else MAX_JSON_BYTES
    if len(payload) > limit:
        raise PayloadError("(payload)", f"{len(payload)} bytes is over the limit of {limit} bytes")
    payload = bytes(payload)
    if where.kind == "detections":
        return parse_detections(payload)
    if where.kind == "classification":
        return parse_classification(payload)
    if where.kind == "events":
        return parse_event(payload)
    if where.kind == "stats":
        return parse_stats(payload)
    if where.kind == "status":
        return StatusMessage(where.device_id, parse_status(payload))
    label = where.label or ""
    if where.kind == "count":
        return CountMessage(where.device_id, label, _parse_count(payload))
    if not payload.startswith(b"\xff\xd8"):
        raise PayloadError("(payload)", "snapshot is not a JPEG (no FF D8 start-of-image marker)")
    return SnapshotMessage(where.device_id, label, bytes(payload))
