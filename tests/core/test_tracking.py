"""Tracker: synthetic scenes with known ground truth, fed frame by frame.

Each scene moves object boxes along straight paths across the frame (as a crop pasted on a
canvas would move), adds detector-like jitter, and checks what a subscriber relies on: one id
per object for its whole visit, no id swap when objects cross, ids kept through missed
detections and dropped frames up to ``max_disappeared``, and fresh ids afterwards.
The real-detector versions of these scenes live in test_events.py.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import numpy.typing as npt
import pytest

from edgecam.core.tracking import Tracker, iou_matrix
from edgecam.types import Detections

Boxes = npt.NDArray[np.float64]


def dets(
    boxes: list[list[float]], labels: list[str], scores: list[float] | None = None
) -> Detections:
    n = len(labels)
    return Detections(
        np.asarray(boxes, np.float32).reshape(n, 4),
        np.zeros(n, np.int32),
        np.asarray(scores if scores is not None else [0.8] * n, np.float32),
        tuple(labels),
    )


def path(
    start: tuple[float, float], end: tuple[float, float], size: tuple[float, float], n: int
) -> Boxes:
    """n boxes (xyxy) whose top-left corner moves linearly from start to end."""
    t = np.linspace(0.0, 1.0, n)[:, None]
    tl = np.asarray(start) * (1 - t) + np.asarray(end) * t
    return np.concatenate([tl, tl + np.asarray(size)], axis=1)


def jitter(boxes: Boxes, seed: int, amount: float = 0.004) -> Boxes:
    noisy: Boxes = boxes + np.random.default_rng(seed).normal(0.0, amount, boxes.shape)
    return noisy


def run_scene(tracker: Tracker, objects: dict[str, tuple[str, Boxes]]) -> dict[str, set[str]]:
    """Feed every object each frame; return ground-truth name -> set of track ids it got."""
    names = list(objects)
    n = len(next(iter(objects.values()))[1])
    ids: dict[str, set[str]] = defaultdict(set)
    for f in range(n):
        step = tracker.update(
            dets([objects[k][1][f].tolist() for k in names], [objects[k][0] for k in names]),
            now=f * 0.1,
        )
        for track in step.tracks:
            if track.observed:
                ids[names[track.detection]].add(track.track_id)
    return ids


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ([0, 0, 1, 1], [0, 0, 1, 1], 1.0),  # identical
        ([0, 0, 0.5, 0.5], [0.5, 0.5, 1, 1], 0.0),  # touching corners only
        ([0, 0, 0.2, 0.1], [0.1, 0, 0.3, 0.1], 1 / 3),  # half of each overlaps
        ([0.2, 0.2, 0.2, 0.4], [0.1, 0.1, 0.5, 0.5], 0.0),  # degenerate (zero width) box
    ],
)
def test_iou_matrix_values(a: list[float], b: list[float], expected: float) -> None:
    assert iou_matrix([a], [b])[0, 0] == pytest.approx(expected)
    assert iou_matrix([a, b], [b]).shape == (2, 1)


def test_two_walkers_keep_one_id_each_for_the_whole_visit() -> None:
    walker = path((0.0, 0.3), (0.8, 0.35), (0.15, 0.5), 60)
    cyclist = path((0.8, 0.1), (0.05, 0.2), (0.12, 0.25), 60)
    ids = run_scene(
        Tracker(),
        {"walker": ("person", jitter(walker, 1)), "cyclist": ("bicycle", jitter(cyclist, 2))},
    )
    assert len(ids["walker"]) == 1 and len(ids["cyclist"]) == 1
    assert ids["walker"] != ids["cyclist"]


def test_crossing_objects_of_different_labels_never_swap_ids() -> None:
    # The person walks right over the car's path: at the crossing the boxes coincide, so only
    # per-label association keeps a person track from taking the car box.
    person = path((0.0, 0.3), (0.8, 0.3), (0.2, 0.4), 41)
    car = path((0.8, 0.3), (0.0, 0.3), (0.2, 0.4), 41)
    tracker = Tracker()
    ids = run_scene(tracker, {"person": ("person", person), "car": ("car", car)})
    assert len(ids["person"]) == 1 and len(ids["car"]) == 1


def test_crossing_objects_of_the_same_label_are_told_apart_by_their_motion() -> None:
    # Two people pass each other with a small vertical offset: at the crossing the other
    # person's box overlaps more than a static guess would; the velocity prediction wins.
    left = path((0.0, 0.30), (0.84, 0.30), (0.16, 0.5), 29)
    right = path((0.84, 0.34), (0.0, 0.34), (0.16, 0.5), 29)
    ids = run_scene(
        Tracker(), {"left": ("person", jitter(left, 3)), "right": ("person", jitter(right, 4))}
    )
    assert len(ids["left"]) == 1 and len(ids["right"]) == 1
    assert ids["left"] != ids["right"]


def test_missed_detections_within_max_disappeared_keep_the_id() -> None:
    boxes = path((0.1, 0.2), (0.7, 0.25), (0.2, 0.4), 30)
    tracker = Tracker(max_disappeared=5)
    seen: set[str] = set()
    for f in range(30):
        missing = 10 <= f < 15  # 5 consecutive misses: exactly the tolerance
        step = tracker.update(None if missing else dets([boxes[f].tolist()], ["person"]), f * 0.1)
        assert not step.removed
        (track,) = step.tracks
        assert track.observed is not missing
        assert track.missed == (f - 9 if missing else 0)
        seen.add(track.track_id)
    assert len(seen) == 1
    # While coasting the prediction kept moving with the object.
    assert track.hits == 25


def test_track_ends_after_max_disappeared_and_a_returning_object_gets_a_new_id() -> None:
    tracker = Tracker(max_disappeared=3)
    box = [0.4, 0.4, 0.6, 0.8]
    first = tracker.update(dets([box], ["cat"], [0.9]), 0.0).tracks[0]
    for f in range(1, 4):
        assert tracker.update(None, f * 0.1).tracks
    step = tracker.update(None, 0.4)  # 4th miss > max_disappeared
    assert step.tracks == ()
    (gone,) = step.removed
    assert gone.track_id == first.track_id and gone.last_seen == 0.0 and gone.missed == 4
    again = tracker.update(dets([box], ["cat"]), 0.5).tracks[0]
    assert again.track_id != first.track_id


def test_skipped_frames_advance_the_prediction() -> None:
    # An object moving 0.02 per source frame; the pipeline only processes every 4th frame.
    boxes = path((0.0, 0.4), (0.78, 0.4), (0.1, 0.2), 40)
    tracker = Tracker(max_disappeared=10)
    ids: set[str] = set()
    for f in range(0, 40, 4):
        step = tracker.update(
            dets([boxes[f].tolist()], ["dog"]), f * 0.1, frames_skipped=0 if f == 0 else 3
        )
        ids.update(t.track_id for t in step.tracks)
    assert len(ids) == 1
    # Two more processed frames with nothing detected and 3 skipped before each: the predicted
    # box is where the object would be 4 and 8 frames later.
    last = boxes[36]
    for k in (1, 2):
        (track,) = tracker.update(None, 4.0, frames_skipped=3).tracks
        expected = last + np.array([0.02, 0, 0.02, 0]) * 4 * k
        np.testing.assert_allclose(track.predicted, expected, atol=1e-3)


def test_buffered_second_pass_links_an_object_that_moved_more_than_its_width() -> None:
    # A walker seen at a low frame rate moves ~80 % of its width between processed frames:
    # plain IoU (0.11) cannot link the first two sightings, the buffered pass can.
    boxes = path((0.0, 0.3), (0.72, 0.3), (0.1, 0.3), 10)
    plain = run_scene(Tracker(match_buffer=0.0), {"walker": ("person", boxes)})
    buffered = run_scene(Tracker(), {"walker": ("person", boxes)})
    assert len(plain["walker"]) > 1
    assert len(buffered["walker"]) == 1


def test_skipped_frames_count_toward_disappearance_but_not_against_a_match() -> None:
    tracker = Tracker(max_disappeared=5)
    box = [0.1, 0.1, 0.3, 0.5]
    first = tracker.update(dets([box], ["person"]), 0.0).tracks[0]
    # 20 frames dropped by the pipeline, then the object is still there: same object.
    after_gap = tracker.update(dets([box], ["person"]), 2.1, frames_skipped=20).tracks[0]
    assert after_gap.track_id == first.track_id
    # 20 frames dropped and nothing detected: gone (it has been unseen for 21 frames).
    step = tracker.update(None, 4.2, frames_skipped=20)
    assert [t.track_id for t in step.removed] == [first.track_id]


def test_ids_are_strings_per_tracker_with_a_run_prefix() -> None:
    a, b = Tracker(id_prefix="run1"), Tracker(id_prefix="run2")
    ids_a = [
        t.track_id
        for t in a.update(dets([[0, 0, 0.1, 0.1], [0.5, 0.5, 0.6, 0.6]], ["cat", "dog"]), 0).tracks
    ]
    ids_b = [t.track_id for t in b.update(dets([[0, 0, 0.1, 0.1]], ["cat"]), 0).tracks]
    assert ids_a == ["run1-1", "run1-2"]
    assert ids_b == ["run2-1"]  # the counter belongs to the instance, not the process
    a.reset()
    assert len(a) == 0
    assert a.update(dets([[0, 0, 0.1, 0.1]], ["cat"]), 1).tracks[0].track_id == "run1-3"
    assert Tracker().update(dets([[0, 0, 0.1, 0.1]], ["cat"]), 0).tracks[0].track_id == "1"


def test_track_reports_the_observed_box_score_and_times() -> None:
    tracker = Tracker()
    tracker.update(dets([[0.1, 0.1, 0.3, 0.5]], ["person"], [0.6]), 100.0)
    (track,) = tracker.update(dets([[0.12, 0.1, 0.32, 0.5]], ["person"], [0.7]), 100.5).tracks
    assert track.xyxy == pytest.approx((0.12, 0.1, 0.32, 0.5))
    assert track.score == pytest.approx(0.7)
    assert (track.first_seen, track.last_seen, track.hits, track.detection) == (100.0, 100.5, 2, 0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"iou_threshold": 0.0},  # would match anything to anything
        {"iou_threshold": 1.5},
        {"max_disappeared": -1},
        {"velocity_smoothing": 0.0},  # velocity would never update
    ],
)
def test_invalid_parameters_are_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        Tracker(**kwargs)  # type: ignore[arg-type]


def test_negative_frames_skipped_is_rejected() -> None:
    with pytest.raises(ValueError, match="frames_skipped"):
        Tracker().update(None, 0.0, frames_skipped=-1)
