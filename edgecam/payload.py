"""Result -> JSON-ready dict: the one place the wire format of detections/classification is built.

Pure: the caller passes device id, run id and the message sequence number, so the same function
serves the JSON-lines sink, MQTT and tests. ``seq`` numbers the messages a run publishes on one
stream (gap-free, so subscribers can detect loss); ``frame_seq`` is the source's frame number.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

from edgecam.types import Classification, Detections, Result

SCHEMA_VERSION = 1
_MQTT_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def sanitize_device_id(name: str) -> str:
    """Make a hostname safe as one MQTT topic level: no '/', '+', '#', spaces or control chars."""
    cleaned = _MQTT_UNSAFE.sub("-", name.strip()).strip("-.").lower()
    return cleaned[:64] or "edgecam"


def iso_utc(epoch_s: float) -> str:
    """ISO-8601 UTC with millisecond precision and a Z suffix."""
    stamp = datetime.fromtimestamp(epoch_s, tz=timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def _box(values: Any) -> dict[str, float]:
    xmin, ymin, xmax, ymax = (float(v) for v in values)
    return {"xmin": xmin, "ymin": ymin, "xmax": xmax, "ymax": ymax}


def _round_box(box: dict[str, float], digits: int) -> dict[str, float]:
    return {k: round(v, digits) for k, v in box.items()}


def detections_list(dets: Detections, width: int, height: int) -> list[dict[str, Any]]:
    pixels = dets.pixels(width, height)
    return [
        {
            "label": dets.label[i],
            "class_id": int(dets.class_id[i]),
            "score": round(float(dets.score[i]), 4),
            "box": _round_box(_box(dets.xyxy[i]), 4),
            "box_px": {k: int(v) for k, v in _box(pixels[i]).items()},
        }
        for i in range(len(dets))
    ]


def classification_list(cls: Classification) -> list[dict[str, Any]]:
    return [
        {"label": cls.label[i], "class_id": int(cls.class_id[i]), "score": round(float(cls.score[i]), 4)}
        for i in range(len(cls))
    ]


def result_kind(result: Result) -> str:
    return "detections" if isinstance(result.output, Detections) else "classification"


def build_result_payload(
    result: Result,
    *,
    device_id: str,
    run_id: str,
    seq: int,
    end_to_end_ms: float | None = None,
) -> dict[str, Any]:
    """The documented `detections` / `classification` message (schema in edgecam/schema/)."""
    kind = result_kind(result)
    timings = {k: round(v, 3) for k, v in result.timings_ms.items()}
    payload: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "type": kind,
        "device_id": device_id,
        "run_id": run_id,
        "seq": seq,
        "frame_seq": result.seq,
        "model": result.model,
        "source": result.source,
        "captured_at": iso_utc(result.timestamp),
        "captured_ms": round(result.timestamp * 1000),
        "frame": {"width": result.width, "height": result.height},
        "latency_ms": {
            "inference": timings.get("invoke", 0.0),
            "end_to_end": round(end_to_end_ms, 3) if end_to_end_ms is not None else None,
        },
        "timings_ms": timings,
    }
    if isinstance(result.output, Detections):
        payload["detections"] = detections_list(result.output, result.width, result.height)
    else:
        payload["classification"] = classification_list(result.output)
    return payload
