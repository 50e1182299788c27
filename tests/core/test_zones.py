"""Zones: point-in-polygon on box bottom-centres, polygon validation, enter/leave hysteresis.

The vectorized even-odd test is checked against OpenCV's pointPolygonTest on random points
for convex and concave shapes; enter/leave timing along a walked path is checked end to end in
test_events.py.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgecam.core.zones import (
    Zone,
    ZonePresence,
    Zones,
    bottom_centre,
    points_in_polygon,
    polygon_problem,
)

SQUARE = ((0.2, 0.2), (0.8, 0.2), (0.8, 0.8), (0.2, 0.8))
L_SHAPE = ((0.1, 0.1), (0.5, 0.1), (0.5, 0.5), (0.9, 0.5), (0.9, 0.9), (0.1, 0.9))
TRIANGLE = ((0.5, 0.05), (0.95, 0.95), (0.05, 0.95))


def test_bottom_centre_is_where_the_object_stands() -> None:
    points = bottom_centre([[0.2, 0.1, 0.4, 0.9], [0.0, 0.0, 1.0, 0.5]])
    np.testing.assert_allclose(points, [[0.3, 0.9], [0.5, 0.5]])


@pytest.mark.parametrize(
    "polygon", [SQUARE, L_SHAPE, TRIANGLE], ids=["square", "concave", "triangle"]
)
def test_points_in_polygon_matches_opencv(polygon: tuple[tuple[float, float], ...]) -> None:
    points = np.random.default_rng(7).uniform(0, 1, (500, 2))
    contour = np.asarray(polygon, np.float32).reshape(-1, 1, 2)
    # Skip points within 1e-6 of an edge, where "inside" is a convention.
    reference = np.array(
        [cv2.pointPolygonTest(contour, (float(x), float(y)), True) for x, y in points]
    )
    clear = np.abs(reference) > 1e-6
    np.testing.assert_array_equal(points_in_polygon(points, polygon)[clear], (reference > 0)[clear])


def test_concave_notch_is_outside() -> None:
    assert points_in_polygon([[0.7, 0.3], [0.3, 0.3], [0.7, 0.7]], L_SHAPE).tolist() == [
        False,
        True,
        True,
    ]


@pytest.mark.parametrize(
    ("points", "message"),
    [
        ([(0.1, 0.1), (0.9, 0.1)], "at least 3 points"),
        ([(0.1, 0.1), (1.2, 0.1), (0.5, 0.9)], "in [0, 1]"),
        ([(0.0, 0.0), (1.0, 1.0), (1.0, 0.0), (0.0, 1.0)], "cross"),  # bow tie
        ([(0.1, 0.1), (0.5, 0.5), (0.9, 0.9)], "no area"),  # collinear
        ([0.1, 0.2, 0.3], "pairs"),  # flat list instead of [x, y] pairs
    ],
)
def test_polygon_problems_are_explained(points: object, message: str) -> None:
    problem = polygon_problem(points)  # type: ignore[arg-type]
    assert problem is not None and message in problem


@pytest.mark.parametrize("polygon", [SQUARE, L_SHAPE, TRIANGLE])
def test_valid_polygons_have_no_problem(polygon: tuple[tuple[float, float], ...]) -> None:
    assert polygon_problem(polygon) is None


def test_zone_rejects_bad_polygon_and_inertia() -> None:
    with pytest.raises(ValueError, match="door"):
        Zone("door", ((0.1, 0.1), (0.2, 0.2)))
    with pytest.raises(ValueError, match="inertia"):
        Zone("door", SQUARE, inertia=0)


def test_zone_names_must_be_unique() -> None:
    with pytest.raises(ValueError, match="unique"):
        Zones([Zone("a", SQUARE), Zone("a", TRIANGLE)])


def test_contains_uses_bottom_centre_and_label_filter() -> None:
    zones = Zones([Zone("yard", SQUARE), Zone("road", TRIANGLE, labels=frozenset({"car"}))])
    boxes = [
        [0.4, 0.0, 0.6, 0.5],  # head outside the square but feet (0.5, 0.5) inside
        [0.4, 0.85, 0.6, 0.9],  # feet at (0.5, 0.9): below the square, inside the triangle
        [0.4, 0.85, 0.6, 0.9],
    ]
    inside = zones.contains(boxes, ["person", "person", "car"])
    # person feet in the triangle do not count: "road" only counts cars
    assert inside.tolist() == [[True, False], [False, False], [False, True]]
    assert zones.contains(np.zeros((0, 4)), []).shape == (0, 2)


def test_presence_needs_inertia_agreeing_observations_to_enter_and_to_leave() -> None:
    presence = ZonePresence([Zone("door", SQUARE, inertia=3)])
    sequence = [True, True, False, True, True, True, False, True, False, False, False]
    changes = [presence.update([value]) for value in sequence]
    entered_at = [i for i, (e, _) in enumerate(changes) if e]
    left_at = [i for i, (_, left) in enumerate(changes) if left]
    assert entered_at == [5]  # the streak restarts after the blip at index 2
    assert left_at == [10]  # a single outside blip (index 6) does not leave
    assert presence.current == ()


def test_presence_with_inertia_one_follows_every_observation() -> None:
    presence = ZonePresence([Zone("a", SQUARE, inertia=1), Zone("b", TRIANGLE, inertia=1)])
    assert presence.update([True, False]) == (("a",), ())
    assert presence.current == ("a",)
    assert presence.update([False, True]) == (("b",), ("a",))
    assert presence.current == ("b",)
