"""The detections/classification payload carries everything the README contract promises."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgecam.core.payload import build_result_payload, iso_utc, sanitize_device_id
from edgecam.types import Classification, Detections, Result


def _result(output: Detections | Classification) -> Result:
    return Result(
        seq=7,
        timestamp=1_700_000_000.25,
        monotonic=1.0,
        model="m",
        width=640,
        height=480,
        output=output,
        timings_ms={"invoke": 4.123456, "preprocess": 0.5},
    )


def test_detection_payload_fields_and_pixel_boxes() -> None:
    dets = Detections(
        np.array([[0.1, 0.25, 0.5, 1.0]], np.float32),
        np.array([0], np.int32),
        np.array([0.87654], np.float32),
        ("person",),
    )
    payload = build_result_payload(
        _result(dets), device_id="cam1", run_id="abc", seq=3, end_to_end_ms=12.5
    )
    assert payload["schema"] == 1 and payload["type"] == "detections"
    assert (payload["seq"], payload["frame_seq"], payload["run_id"]) == (3, 7, "abc")
    assert payload["captured_at"] == "2023-11-14T22:13:20.250Z"
    assert payload["captured_ms"] == 1_700_000_000_250
    assert payload["frame"] == {"width": 640, "height": 480}
    assert payload["latency_ms"] == {"inference": 4.123, "end_to_end": 12.5}
    det = payload["detections"][0]
    assert det["label"] == "person" and det["class_id"] == 0 and det["score"] == 0.8765
    assert det["box"] == {"xmin": 0.1, "ymin": 0.25, "xmax": 0.5, "ymax": 1.0}
    assert det["box_px"] == {"xmin": 64, "ymin": 120, "xmax": 320, "ymax": 480}
    json.dumps(payload)  # plain JSON types only


def test_classification_payload() -> None:
    cls = Classification(
        np.array([286, 282], np.int32), np.array([0.8, 0.1], np.float32), ("Egyptian cat", "tabby")
    )
    payload = build_result_payload(_result(cls), device_id="d", run_id="r", seq=0)
    assert payload["type"] == "classification"
    assert [c["label"] for c in payload["classification"]] == ["Egyptian cat", "tabby"]
    assert payload["latency_ms"]["end_to_end"] is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("raspberrypi", "raspberrypi"),
        ("My Pi/Kitchen#1", "my-pi-kitchen-1"),  # topic separators and wildcards removed
        ("cam+front", "cam-front"),
        ("---", "edgecam"),  # nothing usable left
    ],
)
def test_device_id_is_one_safe_topic_level(raw: str, expected: str) -> None:
    assert sanitize_device_id(raw) == expected


def test_iso_utc_has_millis_and_z() -> None:
    assert iso_utc(0.0015) == "1970-01-01T00:00:00.001Z"
