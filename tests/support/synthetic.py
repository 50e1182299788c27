"""Detector and classifier Results built directly: the producer side of the contract, no model.

Kept apart from conftest so the producer subprocess starts without importing pytest.
"""

from __future__ import annotations

import time

import numpy as np

from edgecam.types import Classification, Detections, Result


def make_result(
    seq: int, n: int = 1, *, width: int = 640, height: int = 480, label: str = "person"
) -> Result:
    """A detector result with `n` boxes, built directly (the producer side of the contract)."""
    xyxy = np.tile(np.array([[0.1, 0.2, 0.5, 0.9]], np.float32), (n, 1))
    dets = Detections(xyxy, np.zeros(n, np.int32), np.full(n, 0.8, np.float32), (label,) * n)
    return Result(
        seq=seq,
        timestamp=time.time(),
        monotonic=time.monotonic(),
        model="ssd_mobilenet_v1",
        width=width,
        height=height,
        output=dets,
        timings_ms={"preprocess": 0.4, "invoke": 8.2, "postprocess": 0.1},
        source="test",
    )


def make_classification(seq: int) -> Result:
    cls = Classification(
        np.array([286, 282], np.int32), np.array([0.8, 0.1], np.float32), ("Egyptian cat", "tabby")
    )
    return Result(
        seq=seq,
        timestamp=time.time(),
        monotonic=time.monotonic(),
        model="mobilenet_v2",
        width=224,
        height=224,
        output=cls,
        timings_ms={"invoke": 4.0},
        source="test",
    )


def moving_person(seq: int) -> Result:
    """A person box sliding right, so the real tracker confirms one track."""
    x = 0.1 + 0.01 * seq
    dets = Detections(
        np.array([[x, 0.2, x + 0.3, 0.9]], np.float32),
        np.zeros(1, np.int32),
        np.array([0.8], np.float32),
        ("person",),
    )
    return Result(
        seq=seq,
        timestamp=1_700_000_000.0 + seq * 0.1,
        monotonic=float(seq),
        model="ssd_mobilenet_v1",
        width=640,
        height=480,
        output=dets,
    )
