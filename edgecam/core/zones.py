"""Named polygon zones: membership by box bottom-centre, enter/leave with hysteresis.

The bottom-centre of a box is where an object stands on the ground, so a person whose head
overlaps a driveway polygon drawn on the ground is not "in" it. Points are normalized [0, 1]
frame coordinates, the same space as detection boxes, so zones survive a resolution change.

``inertia`` (as in Frigate) is how many consecutive observations must agree before a track
enters or leaves a zone: a bottom-centre jittering on an edge would otherwise flap.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


def bottom_centre(xyxy: npt.ArrayLike) -> FloatArray:
    """(N, 4) xyxy boxes → (N, 2) points (x centre, y max), clipped to the frame.

    Detector boxes overshoot the frame edge a little; the edge is where our knowledge ends,
    and a zone drawn down to the bottom edge must still see feet that are cut off.
    """
    boxes = np.asarray(xyxy, np.float64).reshape(-1, 4)
    points = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, boxes[:, 3]], axis=1)
    out: FloatArray = np.clip(points, 0.0, 1.0)
    return out


def points_in_polygon(points: npt.ArrayLike, polygon: npt.ArrayLike) -> BoolArray:
    """Even-odd ray casting, vectorized: (N, 2) points, (K, 2) polygon → (N,) inside.

    Points on an edge count as inside, so a zone drawn along the frame border includes it.
    """
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    poly = np.asarray(polygon, np.float64).reshape(-1, 2)
    x, y = pts[:, :1], pts[:, 1:]
    x0, y0 = poly[None, :, 0], poly[None, :, 1]
    nxt = np.roll(poly, -1, axis=0)
    x1, y1 = nxt[None, :, 0], nxt[None, :, 1]
    crosses = (y0 > y) != (y1 > y)
    dy = np.where(y1 == y0, 1.0, y1 - y0)  # horizontal edges never cross; avoid 0-division
    x_at = x0 + (y - y0) * (x1 - x0) / dy
    inside: BoolArray = (np.count_nonzero(crosses & (x < x_at), axis=1) % 2) == 1
    cross = (x1 - x0) * (y - y0) - (y1 - y0) * (x - x0)
    on_edge = (
        (np.abs(cross) <= 1e-12)
        & (x >= np.minimum(x0, x1))
        & (x <= np.maximum(x0, x1))
        & (y >= np.minimum(y0, y1))
        & (y <= np.maximum(y0, y1))
    )
    result: BoolArray = inside | on_edge.any(axis=1)
    return result


def _orient(a: FloatArray, b: FloatArray, c: FloatArray) -> float:
    return float((b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]))


def _segments_cross(p1: FloatArray, p2: FloatArray, q1: FloatArray, q2: FloatArray) -> bool:
    """Proper or touching intersection of two segments (collinear overlap counts)."""
    d1, d2 = _orient(q1, q2, p1), _orient(q1, q2, p2)
    d3, d4 = _orient(p1, p2, q1), _orient(p1, p2, q2)
    if ((d1 > 0) != (d2 > 0)) and ((d3 > 0) != (d4 > 0)) and 0 not in (d1, d2, d3, d4):
        return True

    def on(a: FloatArray, b: FloatArray, c: FloatArray, d: float) -> bool:
        return (
            d == 0
            and min(a[0], b[0]) <= c[0] <= max(a[0], b[0])
            and (min(a[1], b[1]) <= c[1] <= max(a[1], b[1]))
        )

    return on(q1, q2, p1, d1) or on(q1, q2, p2, d2) or on(p1, p2, q1, d3) or on(p1, p2, q2, d4)


def polygon_problem(points: Sequence[Sequence[float]]) -> str | None:
    """Why ``points`` is not a usable zone polygon, or None when it is (for config errors)."""
    poly = np.asarray(points, np.float64)
    if poly.ndim != 2 or poly.shape[1] != 2:
        return f"points must be [x, y] pairs, got shape {poly.shape}"
    if len(poly) < 3:
        return f"a zone needs at least 3 points, got {len(poly)}"
    if not np.all(np.isfinite(poly)) or poly.min() < 0.0 or poly.max() > 1.0:
        return "every coordinate must be in [0, 1] (normalized to the frame width/height)"
    k = len(poly)
    for i in range(k):
        for j in range(i + 2, k):
            if i == 0 and j == k - 1:
                continue  # adjacent through the closing edge
            if _segments_cross(poly[i], poly[(i + 1) % k], poly[j], poly[(j + 1) % k]):
                edges = f"edges {i}-{i + 1} and {j}-{(j + 1) % k}"
                return f"{edges} cross: list the points in order around the zone"
    x, y = poly[:, 0], poly[:, 1]
    area = 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
    if area <= 1e-9:
        return "the polygon has no area (all points on one line?)"
    return None


@dataclass(frozen=True, slots=True)
class Zone:
    """A named polygon. labels: only these labels count as inside (empty: every label)."""

    name: str
    points: tuple[tuple[float, float], ...]
    inertia: int = 3
    labels: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        problem = polygon_problem(self.points)
        if problem:
            raise ValueError(f"zone {self.name!r}: {problem}")
        if self.inertia < 1:
            raise ValueError(f"zone {self.name!r}: inertia must be >= 1, got {self.inertia}")


class Zones:
    """The configured zones; computes membership for many boxes at once."""

    def __init__(self, zones: Iterable[Zone] = ()) -> None:
        self.zones = tuple(zones)
        names = [z.name for z in self.zones]
        if len(set(names)) != len(names):
            raise ValueError(f"zone names must be unique, got {names}")
        self._polygons = [np.asarray(z.points, np.float64) for z in self.zones]

    def __len__(self) -> int:
        return len(self.zones)

    def contains(self, xyxy: npt.ArrayLike, labels: Sequence[str]) -> BoolArray:
        """(N, Z): is the bottom-centre of box n inside zone z (and does z count its label)?"""
        points = bottom_centre(xyxy)
        out = np.zeros((len(points), len(self.zones)), np.bool_)
        if not len(points):
            return out
        label_arr = np.array(labels)
        for z, (zone, poly) in enumerate(zip(self.zones, self._polygons, strict=True)):
            inside = points_in_polygon(points, poly)
            if zone.labels:
                inside &= np.isin(label_arr, list(zone.labels))
            out[:, z] = inside
        return out

    def presence(self) -> ZonePresence:
        return ZonePresence(self.zones)


class ZonePresence:
    """Zone state of one track: which zones it is in, flipped only after ``inertia`` agreeing
    observations."""

    __slots__ = ("_inside", "_names", "_needed", "_streak")

    def __init__(self, zones: Sequence[Zone]) -> None:
        self._names = tuple(z.name for z in zones)
        self._needed = tuple(z.inertia for z in zones)
        self._inside = [False] * len(zones)
        self._streak = [0] * len(zones)

    @property
    def current(self) -> tuple[str, ...]:
        return tuple(n for n, inside in zip(self._names, self._inside, strict=True) if inside)

    def update(self, inside: Sequence[bool]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Feed one observation (one bool per zone); returns (entered, left) zone names."""
        entered: list[str] = []
        left: list[str] = []
        for z, now_in in enumerate(inside):
            if bool(now_in) == self._inside[z]:
                self._streak[z] = 0
                continue
            self._streak[z] += 1
            if self._streak[z] >= self._needed[z]:
                self._inside[z] = bool(now_in)
                self._streak[z] = 0
                (entered if now_in else left).append(self._names[z])
        return tuple(entered), tuple(left)
