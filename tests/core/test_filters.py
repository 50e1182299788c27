"""Per-label filters and the confirmation rule.

Detections are checked against their label's limits (score, area as a fraction of the frame,
width/height ratio in pixels, allow/deny lists) before tracking; a track is confirmed only when
the lower median of its recent scores (zero-padded to the window) reaches confirm_score, so a
single confident false positive can never be confirmed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgecam.core.filters import LabelRule, ObjectFilter, window_median
from edgecam.types import Detections


def dets(rows: list[tuple[str, float, list[float]]]) -> Detections:
    return Detections(
        np.asarray([r[2] for r in rows], np.float32).reshape(len(rows), 4),
        np.zeros(len(rows), np.int32),
        np.asarray([r[1] for r in rows], np.float32),
        tuple(r[0] for r in rows),
    )


@pytest.mark.parametrize(
    ("scores", "frames", "expected"),
    [
        ([0.9], 5, 0.0),  # one observation: padded with 4 zeros
        ([0.9, 0.9], 5, 0.0),  # two of five: still below half
        ([0.9, 0.9, 0.9], 5, 0.9),  # three of five: the median is real
        ([0.7, 0.9, 0.8], 3, 0.8),  # full window: plain median
        ([0.1, 0.1, 0.1, 0.8, 0.9, 0.7], 3, 0.8),  # only the last `frames` count
        ([0.9, 0.6], 2, 0.6),  # even window: the *lower* middle value
        ([0.9], 2, 0.0),  # even window, one observation: never the average 0.45
        ([0.9], 1, 0.9),  # a window of one trusts a single frame (explicit user choice)
    ],
)
def test_window_median(scores: list[float], frames: int, expected: float) -> None:
    assert window_median(scores, frames) == pytest.approx(expected)


@pytest.mark.parametrize("frames", range(2, 11))
def test_one_perfect_frame_never_confirms_with_a_window_of_two_or_more(frames: int) -> None:
    rule = ObjectFilter(LabelRule(confirm_frames=frames, confirm_score=0.01))
    assert not rule.confirmed("person", [1.0])
    assert rule.confirmed("person", [1.0] * frames)


def test_confirmation_uses_the_rule_of_the_label() -> None:
    filt = ObjectFilter(
        LabelRule(confirm_frames=3, confirm_score=0.6),
        {"cat": LabelRule(confirm_frames=3, confirm_score=0.8)},
    )
    assert filt.confirmed("person", [0.7, 0.7])
    assert not filt.confirmed("cat", [0.7, 0.7, 0.7])
    assert filt.confirmed("cat", [0.85, 0.9])


def test_min_score_and_area_limits() -> None:
    filt = ObjectFilter(LabelRule(min_score=0.5, min_area=0.01, max_area=0.5))
    batch = dets(
        [
            ("car", 0.9, [0.1, 0.1, 0.3, 0.3]),  # area 0.04: kept
            ("car", 0.45, [0.1, 0.1, 0.3, 0.3]),  # score below min_score
            ("car", 0.9, [0.1, 0.1, 0.15, 0.15]),  # area 0.0025: too small
            ("car", 0.9, [0.0, 0.0, 0.9, 0.9]),  # area 0.81: too big (a wall, not a car)
            ("car", 0.5, [0.5, 0.5, 0.7, 0.7]),  # exactly min_score is kept
        ]
    )
    assert filt.mask(batch, 640, 480).tolist() == [True, False, False, False, True]
    assert len(filt.apply(batch, 640, 480)) == 2


def test_aspect_ratio_is_measured_in_pixels() -> None:
    # A normalized square box is 16:9 wide in pixels on a 1920x1080 frame, 1:1 on a square one.
    filt = ObjectFilter(LabelRule(min_score=0.0, min_ratio=0.0, max_ratio=1.2))
    square = dets([("person", 0.9, [0.2, 0.2, 0.4, 0.4])])
    assert filt.mask(square, 1080, 1080).tolist() == [True]
    assert filt.mask(square, 1920, 1080).tolist() == [False]


def test_degenerate_boxes_are_always_dropped() -> None:
    filt = ObjectFilter(LabelRule(min_score=0.0))
    batch = dets([("cat", 0.9, [0.3, 0.3, 0.3, 0.6]), ("cat", 0.9, [0.3, 0.6, 0.5, 0.4])])
    assert filt.mask(batch, 640, 480).tolist() == [False, False]


def test_allow_and_deny_lists() -> None:
    batch = dets([(label, 0.9, [0.1, 0.1, 0.3, 0.3]) for label in ("person", "tv", "car")])
    assert ObjectFilter(deny=["tv"]).mask(batch, 640, 480).tolist() == [True, False, True]
    assert ObjectFilter(allow=["person"]).mask(batch, 640, 480).tolist() == [True, False, False]
    # deny wins when a label is in both (the config section rejects that combination anyway)
    both = ObjectFilter(allow=["person", "tv"], deny=["tv"])
    assert both.mask(batch, 640, 480).tolist() == [True, False, False]


def test_per_label_rules_override_the_default() -> None:
    filt = ObjectFilter(LabelRule(min_score=0.5), {"person": LabelRule(min_score=0.7)})
    batch = dets([("person", 0.6, [0.1, 0.1, 0.3, 0.3]), ("dog", 0.6, [0.5, 0.5, 0.7, 0.7])])
    assert filt.mask(batch, 640, 480).tolist() == [False, True]
    assert filt.rule("dog") is filt.default


def test_box_mostly_inside_a_better_box_of_the_same_label_is_a_duplicate() -> None:
    # The model's IoU-based NMS keeps a person box stretched over a person and the dog at
    # their feet next to the person's own box; only the better-scoring one may reach the tracker.
    batch = dets(
        [
            ("person", 0.70, [0.40, 0.10, 0.60, 0.55]),  # the person
            ("person", 0.55, [0.38, 0.08, 0.64, 0.95]),  # stretched over person + dog
            ("dog", 0.60, [0.40, 0.60, 0.62, 0.95]),  # other label: never a duplicate
            ("person", 0.65, [0.70, 0.10, 0.90, 0.55]),  # another person, apart
        ]
    )
    assert ObjectFilter().mask(batch, 640, 480).tolist() == [True, False, True, True]
    # The rule is symmetric: a small box inside a bigger *better* box goes instead.
    swapped = dets(
        [("person", 0.55, [0.40, 0.10, 0.60, 0.55]), ("person", 0.7, [0.38, 0.08, 0.64, 0.95])]
    )
    assert ObjectFilter().mask(swapped, 640, 480).tolist() == [False, True]


def test_side_by_side_boxes_are_not_duplicates() -> None:
    # Two people shoulder to shoulder overlap by a third of the smaller box: both kept.
    batch = dets([("person", 0.9, [0.30, 0.1, 0.50, 0.9]), ("person", 0.6, [0.43, 0.1, 0.63, 0.9])])
    assert ObjectFilter().mask(batch, 640, 480).tolist() == [True, True]
    with pytest.raises(ValueError, match="duplicate_overlap"):
        ObjectFilter(duplicate_overlap=0.0)


def test_empty_detections() -> None:
    assert ObjectFilter().mask(Detections.empty(), 640, 480).shape == (0,)
    assert len(ObjectFilter().apply(Detections.empty(), 640, 480)) == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_score": 1.5},
        {"min_area": 0.5, "max_area": 0.1},  # empty range
        {"min_ratio": 2.0, "max_ratio": 1.0},
        {"confirm_frames": 0},
        {"confirm_score": -0.1},
    ],
)
def test_invalid_rules_are_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="LabelRule"):
        LabelRule(**kwargs)  # type: ignore[arg-type]


def test_default_rule_accepts_any_shape() -> None:
    rule = LabelRule()
    assert rule.max_ratio == math.inf and rule.min_area == 0.0 and rule.max_area == 1.0
