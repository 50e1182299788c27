"""The JSON-lines sink writes one parseable line per frame, with a gap-free seq."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgecam.errors import SinkError
from edgecam.sinks.jsonl import JsonlSink
from edgecam.types import Detections, Result


def _result(seq: int, n: int) -> Result:
    dets = Detections(
        np.tile(np.array([[0.1, 0.1, 0.2, 0.2]], np.float32), (n, 1)),
        np.zeros(n, np.int32),
        np.full(n, 0.9, np.float32),
        ("person",) * n,
    )
    return Result(
        seq=seq, timestamp=1.0, monotonic=0.0, model="m", width=10, height=10, output=dets
    )


def test_every_frame_and_detections_only(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    sink = JsonlSink(str(out), device_id="d", every_frame=False, run_id="r")
    for seq, n in enumerate([1, 0, 2, 0]):
        sink.handle(_result(seq, n))
    sink.close()
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(p["seq"], p["frame_seq"], len(p["detections"])) for p in lines] == [
        (0, 0, 1),
        (1, 2, 2),
    ]


def test_appends_and_reports_unwritable_path(tmp_path: Path) -> None:
    with pytest.raises(SinkError, match="cannot open"):
        JsonlSink(str(tmp_path / "missing" / "x.jsonl"), device_id="d")


def test_a_failed_write_names_the_output_and_close_adds_no_second_error() -> None:
    sink = JsonlSink("/dev/full", device_id="d", run_id="r")
    with pytest.raises(SinkError, match=r"^/dev/full: cannot write JSON lines: No space left"):
        sink.handle(_result(0, 1))
    sink.close()  # the failure was reported once, by the write
