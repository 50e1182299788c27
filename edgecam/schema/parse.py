"""The subscriber-side parser: MQTT topic + payload -> frozen dataclasses, or PayloadError.

Third parties import this module to turn a message into frozen dataclasses; it imports only
the standard library (no numpy, no OpenCV, no paho). A malformed payload raises PayloadError
naming the first bad field. Unknown extra fields are ignored (tolerant reader); the JSON Schema
files next to this module describe exactly what schema version 1 producers emit.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib import resources
from typing import Any

from edgecam.schema._reader import Obj, PayloadError
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


def parse_topic(topic: str) -> Topic:
    parts = topic.split("/")
    if len(parts) >= 4 and parts[-2] in ("count", "snapshot"):
        return Topic("/".join(parts[:-3]), parts[-3], parts[-2], parts[-1])
    if len(parts) >= 3 and parts[-1] in TOPIC_KINDS:
        return Topic("/".join(parts[:-2]), parts[-2], parts[-1])
    kinds = ", ".join(TOPIC_KINDS)
    raise PayloadError(
        "(topic)", f"{topic!r} is not <prefix>/<device_id>/<kind>, kind one of {kinds}"
    )


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
    if isinstance(payload, Mapping):
        return Obj(payload)
    try:
        return Obj(json.loads(payload))
    except UnicodeDecodeError as exc:
        raise PayloadError("(payload)", f"not UTF-8 text: {exc.reason}") from None
    except json.JSONDecodeError as exc:
        raise PayloadError("(payload)", f"not valid JSON: {exc.msg} at char {exc.pos}") from None


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


def parse_stats(payload: bytes | str | Mapping[str, Any]) -> StatsMessage:
    """The retained `<prefix>/<device>/stats` message."""
    obj = _load(payload)
    mqtt = obj.obj("mqtt")
    counters = (
        "outbox_depth",
        "outbox_bytes",
        "messages_dropped",
        "messages_dropped_total",
        "messages_rejected",
        "published",
        "acked",
        "reconnects",
    )
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
        mqtt=PublisherStats(
            mqtt.string("state", choices=("connected", "disconnected")),
            *(mqtt.integer(name, minimum=0) for name in counters),
        ),
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


def parse_status(payload: bytes | str) -> bool:
    """`online` -> True, `offline` -> False (the retained status / Last Will payload)."""
    text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload
    if text not in ("online", "offline"):
        raise PayloadError("(payload)", f"expected 'online' or 'offline', got {text[:40]!r}")
    return text == "online"


def _parse_count(payload: bytes) -> int:
    text = payload.decode("utf-8", "replace").strip()
    if not text.isdigit():
        raise PayloadError("(payload)", f"expected a count like '2', got {text[:40]!r}")
    return int(text)


def parse_message(topic: str, payload: bytes) -> Message:
    """Dispatch on the topic's last level(s); raises PayloadError for anything malformed."""
    where = parse_topic(topic)
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
