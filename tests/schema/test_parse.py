"""The payload contract: what producers build validates against the shipped JSON Schema files, the
typed parser turns it into dataclasses, and both reject the same malformed payloads, naming the
bad field. No broker needed here; the broker tests validate what actually went over the wire.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import jsonschema
import pytest

from edgecam.core.events import EventEngine, events_to_dict
from edgecam.core.payload import build_event_payload, build_result_payload, build_stats_payload
from edgecam.schema import (
    ClassificationMessage,
    CountMessage,
    DetectionsMessage,
    EventMessage,
    PayloadError,
    SnapshotMessage,
    StatsMessage,
    StatusMessage,
    json_schema,
    parse_classification,
    parse_detections,
    parse_event,
    parse_message,
    parse_stats,
    parse_topic,
)
from edgecam.schema.parse import SCHEMA_NAMES
from tests.support.mosquitto import make_classification, make_result
from tests.support.paths import REPO
from tests.support.synthetic import moving_person

PARSERS: dict[
    str,
    Callable[
        [bytes | str], DetectionsMessage | ClassificationMessage | EventMessage | StatsMessage
    ],
] = {
    "detections": parse_detections,
    "classification": parse_classification,
    "events": parse_event,
    "stats": parse_stats,
}


def validator(name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json_schema(name))


def detections_payload() -> dict[str, Any]:
    return build_result_payload(
        make_result(41, n=2), device_id="cam1", run_id="0123456789ab", seq=7, end_to_end_ms=12.5
    )


def classification_payload() -> dict[str, Any]:
    return build_result_payload(make_classification(3), device_id="cam1", run_id="r1", seq=0)


def stats_payload() -> dict[str, Any]:
    mqtt = {
        "state": "connected",
        "outbox_depth": 0,
        "outbox_bytes": 0,
        "messages_dropped": 0,
        "messages_dropped_total": 0,
        "messages_rejected": 0,
        "published": 10,
        "acked": 10,
        "reconnects": 1,
    }
    return build_stats_payload(
        device_id="cam1",
        run_id="r1",
        model="m",
        now=time.time(),
        uptime_s=12.0,
        cpu_percent=35.5,
        rss_mb=80.2,
        pipeline={  # the shape of edgecam.pipeline.pipeline.Pipeline.stats()
            "frames_in": 120,
            "processed": 118,
            "dropped": 2,
            "fps_in": 10.0,
            "fps_out": 9.8,
            "queue_depth": {"frames": 0, "results": 1},
            "stages_ms": {"invoke": {"mean": 8.3, "p50": 8.1, "p95": 9.7}},
            "latency_ms": {"mean": 12.0, "p50": 11.5, "p95": 15.2},
            "execution": EXECUTION,
        },
        mqtt=mqtt,
    )


#: The shape of Pipeline.execution_report(): adaptive execution measured three arrangements.
EXECUTION = {
    "mode": "sequential",
    "threads": 2,
    "chosen_by": "calibration",
    "running": "sequential/2",
    "candidates": ["sequential/2", "pipelined/2", "pipelined/1"],
    "rechecks": 0,
    "trials": [
        {"arrangement": "sequential/2", "frames": 9, "seconds": 0.4, "fps": 22.1,
         "input_fps": 22.0, "latency_ms": 44.9, "stages_ms": {"invoke": 40.1}},
        {"arrangement": "pipelined/2", "frames": 8, "seconds": 0.4, "fps": 20.3,
         "input_fps": 20.1, "latency_ms": 180.2, "stages_ms": {"invoke": 45.0}},
    ],
}  # fmt: skip


def event_payloads() -> list[dict[str, Any]]:
    """Events from the real EventEngine (edgecam.core.events), wrapped as the MQTT sink does."""
    engine = EventEngine(keep_frames=False)
    events = [e for seq in range(12) for e in engine.update(moving_person(seq)).events]
    events += list(engine.flush().events)
    return [
        build_event_payload(
            events_to_dict(e, "cam1"),
            device_id="cam1",
            run_id="r1",
            seq=i,
            model="ssd_mobilenet_v1",
        )
        for i, e in enumerate(events)
    ]


VALID = {
    "detections": detections_payload,
    "classification": classification_payload,
    "stats": stats_payload,
}


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_shipped_schemas_are_valid_draft_2020_12(name: str) -> None:
    schema = json_schema(name)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


@pytest.mark.parametrize("name", sorted(VALID))
def test_producer_payloads_validate_and_parse(name: str) -> None:
    payload = VALID[name]()
    validator(name).validate(json.loads(json.dumps(payload)))
    parsed = PARSERS[name](json.dumps(payload).encode())
    assert parsed.device_id == "cam1"


def test_detections_parse_into_typed_values() -> None:
    msg = parse_detections(json.dumps(detections_payload()))
    assert isinstance(msg, DetectionsMessage)
    assert (msg.seq, msg.frame_seq, msg.run_id) == (7, 41, "0123456789ab")
    assert (msg.width, msg.height, msg.end_to_end_ms) == (640, 480, 12.5)
    assert msg.captured_at.tzinfo is not None
    assert abs(msg.captured_at.timestamp() * 1000 - msg.captured_ms) < 1
    assert len(msg.detections) == 2
    det = msg.detections[0]
    assert (det.label, det.class_id, det.score) == ("person", 0, 0.8)
    assert (det.box.xmin, det.box.ymax) == (0.1, 0.9)
    assert (det.box_px.xmin, det.box_px.ymin, det.box_px.xmax, det.box_px.ymax) == (
        64,
        96,
        320,
        432,
    )
    assert msg.timings_ms["invoke"] == 8.2


def test_real_tracker_events_validate_and_parse() -> None:
    payloads = event_payloads()
    kinds = [p["event"] for p in payloads]
    assert kinds[0] == "new" and kinds[-1] == "end", kinds
    for payload in payloads:
        validator("events").validate(json.loads(json.dumps(payload)))
    first, last = parse_event(payloads[0]), parse_event(payloads[-1])
    assert first.track_id == last.track_id and first.event_id != last.event_id
    assert last.duration_s >= 0 and last.best.score == pytest.approx(0.8, abs=1e-3)
    assert [parse_event(p).seq for p in payloads] == list(range(len(payloads)))


def test_event_box_overhanging_the_frame_is_clipped() -> None:
    payload = event_payloads()[0]
    payload["box"] = {"xmin": -0.02, "ymin": 0.2, "xmax": 1.03, "ymax": 0.9}
    wrapped = build_event_payload(payload, device_id="cam1", run_id="r1", seq=0, model="m")
    assert wrapped["box"] == {"xmin": 0.0, "ymin": 0.2, "xmax": 1.0, "ymax": 0.9}
    validator("events").validate(wrapped)


def _set(path: str, value: Any) -> Any:
    def mutate(payload: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(payload)
        *parents, last = path.split(".")
        node: Any = out
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        if value is _DELETE:
            del node[last]
        else:
            node[last] = value
        return out

    return mutate


_DELETE = object()

MALFORMED = [
    # (schema name, mutation, field the parser must name)
    ("detections", _set("seq", -1), "seq"),  # negative counter
    ("detections", _set("seq", "7"), "seq"),  # number as a string
    ("detections", _set("device_id", _DELETE), "device_id"),  # required field missing
    ("detections", _set("schema", 2), "schema"),  # newer schema version
    ("detections", _set("captured_at", "yesterday"), "captured_at"),  # not ISO-8601
    ("detections", _set("frame.width", 0), "frame.width"),  # empty frame
    ("detections", _set("detections.0.score", 1.5), "detections[0].score"),  # score above 1
    ("detections", _set("detections.1.box.xmax", "wide"), "detections[1].box.xmax"),
    ("detections", _set("detections.0.box_px.ymin", -3), "detections[0].box_px.ymin"),
    ("detections", _set("detections", {"label": "x"}), "detections"),  # object, not list
    ("detections", _set("latency_ms.inference", None), "latency_ms.inference"),
    ("classification", _set("classification.0.class_id", True), "classification[0].class_id"),
    ("classification", _set("type", "detections"), "type"),  # wrong message kind
    ("stats", _set("mqtt.state", "sleepy"), "mqtt.state"),
    ("stats", _set("mqtt.messages_dropped", -1), "mqtt.messages_dropped"),
    ("stats", _set("pipeline", []), "pipeline"),
    ("stats", _set("uptime_s", -1), "uptime_s"),
    ("stats", _set("pipeline.execution.mode", "turbo"), "pipeline.execution.mode"),
    ("stats", _set("pipeline.execution.threads", 0), "pipeline.execution.threads"),
    ("stats", _set("pipeline.execution.trials.0.fps", -1), "pipeline.execution.trials[0].fps"),
]


@pytest.mark.parametrize(("name", "mutate", "field"), MALFORMED)
def test_malformed_payloads_are_rejected_by_schema_and_parser(
    name: str, mutate: Any, field: str
) -> None:
    bad = mutate(VALID[name]())
    assert not validator(name).is_valid(bad)
    with pytest.raises(PayloadError) as info:
        PARSERS[name](json.dumps(bad))
    assert info.value.field == field
    assert str(info.value).startswith(field + ":")


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (_set("event", "moved"), "event"),  # unknown lifecycle step
        (_set("track_id", 3), "track_id"),  # ids are strings
        (_set("reasons", ["because"]), "reasons[0]"),
        (_set("best.time_at", "now"), "best.time_at"),
        (_set("zones", "driveway"), "zones"),  # a list, not a string
    ],
)
def test_malformed_events_are_rejected(mutate: Any, field: str) -> None:
    bad = mutate(event_payloads()[0])
    assert not validator("events").is_valid(bad)
    with pytest.raises(PayloadError) as info:
        parse_event(bad)
    assert info.value.field == field


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"\xff\xfe{", "UTF-8"),
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "expected a JSON object"),
    ],
)
def test_undecodable_payloads_name_the_problem(raw: bytes, problem: str) -> None:
    with pytest.raises(PayloadError, match=problem):
        parse_detections(raw)


def test_parser_ignores_unknown_fields_but_schema_v1_is_exact() -> None:
    """Tolerant reader: a field added later does not break old subscribers; producers are exact."""
    payload = {**detections_payload(), "new_field": 1}
    assert parse_detections(payload).seq == 7
    assert not validator("detections").is_valid(payload)


def test_newer_schema_version_says_upgrade() -> None:
    with pytest.raises(PayloadError, match="upgrade edgecam"):
        parse_detections({**detections_payload(), "schema": 2})


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("edgecam/cam1/detections", ("edgecam", "cam1", "detections", None)),
        ("site/a/edgecam/cam-2/status", ("site/a/edgecam", "cam-2", "status", None)),  # deep prefix
        ("edgecam/cam1/count/dining_table", ("edgecam", "cam1", "count", "dining_table")),
        ("edgecam/cam1/snapshot/person", ("edgecam", "cam1", "snapshot", "person")),
    ],
)
def test_parse_topic(topic: str, expected: tuple[str, str, str, str | None]) -> None:
    t = parse_topic(topic)
    assert (t.prefix, t.device_id, t.kind, t.label) == expected


def test_parse_topic_rejects_foreign_topics() -> None:
    with pytest.raises(PayloadError, match="not <prefix>/<device_id>/<kind>"):
        parse_topic("edgecam/cam1/video")


def test_parse_message_dispatches_on_topic() -> None:
    status = parse_message("edgecam/cam1/status", b"offline")
    assert status == StatusMessage("cam1", online=False)
    assert parse_message("edgecam/cam1/count/person", b"3") == CountMessage("cam1", "person", 3)
    snap = parse_message("edgecam/cam1/snapshot/person", b"\xff\xd8\xff\xe0rest")
    assert isinstance(snap, SnapshotMessage) and snap.label == "person"
    detections = parse_message("edgecam/cam1/detections", json.dumps(detections_payload()).encode())
    assert isinstance(detections, DetectionsMessage) and detections.seq == 7
    validator("status").validate("online")
    with pytest.raises(PayloadError, match="'online' or 'offline'"):
        parse_message("edgecam/cam1/status", b"up")
    with pytest.raises(PayloadError, match="not a JPEG"):
        parse_message("edgecam/cam1/snapshot/person", b"GIF89a")


def test_schema_package_needs_no_numpy_or_opencv() -> None:
    """Third-party subscribers import the parser without the inference stack."""
    code = (
        "import sys, edgecam.schema; "
        "bad = [m for m in ('numpy', 'cv2', 'paho', 'pydantic') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("topic", "payload", "problem"),
    [
        # json recursed into RecursionError
        ("edgecam/x/detections", b"[" * 100_000 + b"]" * 100_000, "nested 100000 levels deep"),
        # int() raised ValueError past 4300 digits; str.isdigit() let '²' reach int()
        ("edgecam/x/count/person", b"9" * 5000, "expected a count like '2'"),
        ("edgecam/x/count/person", "²".encode(), "expected a count like '2'"),
        ("edgecam/x/detections", b'{"schema": ' + b"9" * 5000 + b"}", "5000 digits"),
        # not JSON, though Python's json takes them
        ("edgecam/x/detections", b'{"schema": NaN}', "NaN is not a number in JSON"),
        # a valid escape that no UTF-8 writer (a subscriber's log, a terminal) can encode
        ("edgecam/x/detections", b'{"schema": 1, "type": "\\ud800"}', "lone UTF-16 surrogate"),
        ("edgecam/x/detections", b" " * ((1 << 20) + 1), "over the limit of 1048576 bytes"),
        # a device id outside the one rule, as a topic level
        ("edgecam/\x1b[2J/status", b"online", "is not 1-64 characters"),
        ("edgecam/cam1/count/+", b"1", "is not an MQTT topic name"),
    ],
)
def test_hostile_payloads_raise_payload_error_only(
    topic: str, payload: bytes, problem: str
) -> None:
    """What crashed subscribers with another exception; docs/mqtt.md catches PayloadError."""
    with pytest.raises(PayloadError, match=re.escape(problem)):
        parse_message(topic, payload)


def test_stats_execution_parses_typed_and_is_optional() -> None:
    """What adaptive execution chose reaches subscribers typed; producers from before the
    field (no `pipeline.execution`) still parse, with execution None."""
    message = parse_stats(json.dumps(stats_payload()))
    execution = message.execution
    assert execution is not None
    assert (execution.mode, execution.threads, execution.chosen_by) == (
        "sequential",
        2,
        "calibration",
    )
    assert execution.running == "sequential/2" and execution.rechecks == 0
    assert [(t.arrangement, t.fps) for t in execution.trials] == [
        ("sequential/2", 22.1),
        ("pipelined/2", 20.3),
    ]
    older = stats_payload()
    del older["pipeline"]["execution"]
    assert validator("stats").is_valid(older)
    assert parse_stats(json.dumps(older)).execution is None
    pinned = stats_payload()
    pinned["pipeline"]["execution"] = {"mode": "pipelined", "threads": None, "chosen_by": "config"}
    parsed = parse_stats(json.dumps(pinned)).execution
    assert validator("stats").is_valid(pinned)
    assert parsed is not None and parsed.threads is None and parsed.trials == ()
