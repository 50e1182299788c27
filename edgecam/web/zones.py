"""The zone editor's server half: a drawn polygon -> checked `[[zones]]` TOML + who is inside.

The page sends the draft as query parameters; everything that decides anything happens here,
with edgecam's own code: the TOML is written by the same writer as `edgecam config show`, read
back with tomllib and validated by the config loader's model (so what the page shows is what
`edgecam config check` accepts), labels are checked against the model's, and membership uses
:class:`edgecam.core.zones.Zones` (box bottom-centre, the zone's label filter), exactly what the
event engine applies. The preview is instantaneous: the engine also waits for `inertia`
agreeing frames before it reports an enter or leave.
"""

from __future__ import annotations

import sys
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from edgecam.config.problems import describe_errors
from edgecam.config.root import EdgecamConfig
from edgecam.config.writer import dump_toml
from edgecam.config.zones import ZoneSection
from edgecam.core.zones import Zones, bottom_centre
from edgecam.types import Detections
from edgecam.web.render import short_id
from edgecam.web.state import LiveView

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

MAX_POINTS = 64
DIGITS = 4


@dataclass(frozen=True)
class DraftResult:
    """What the editor shows: the TOML (when valid), the problems otherwise, who is inside."""

    toml: str
    problems: list[str]
    zones: tuple[ZoneSection, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def parse_points(text: str) -> list[tuple[float, float]]:
    """`x,y;x,y;...` (normalized) -> points rounded to 4 decimals; ValueError says what is wrong."""
    points: list[tuple[float, float]] = []
    for i, pair in enumerate(p for p in text.split(";") if p.strip()):
        parts = pair.split(",")
        if len(parts) != 2:
            raise ValueError(f"point {i + 1}: expected x,y, got {pair!r}")
        try:
            x, y = (round(float(v), DIGITS) for v in parts)
        except ValueError:
            raise ValueError(f"point {i + 1}: {pair!r} is not two numbers") from None
        if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
            raise ValueError(f"point {i + 1}: ({x}, {y}) is outside the frame (0..1)")
        points.append((x, y))
        if len(points) > MAX_POINTS:
            raise ValueError(f"at most {MAX_POINTS} points")
    return points


def _int(text: str | None, default: int) -> int:
    if text is None or not text.strip():
        return default
    try:
        return int(text)
    except ValueError:
        return -1  # the model's bound check names the field and the range


def build_draft(
    query: Mapping[str, str],
    *,
    existing: Sequence[ZoneSection],
    known_labels: Collection[str],
) -> DraftResult:
    """The zone drawn on the page, validated; with `scope=all`, every configured zone too
    (the draft replaces the zone named `replace`, or the one with its own name)."""
    problems: list[str] = []
    try:
        points = parse_points(query.get("points", ""))
    except ValueError as exc:
        return DraftResult("", [f"zones.points: {exc}"], ())
    labels = [s.strip() for s in query.get("labels", "").split(",") if s.strip()]
    unknown = sorted(set(labels) - set(known_labels))
    if unknown:
        problems.append(
            f"zones.labels: {', '.join(unknown)} not in the model's labels (pick from the list)"
        )
    zone = {
        "name": query.get("name", "").strip(),
        "points": [list(p) for p in points],
        "inertia": _int(query.get("inertia"), 3),
        "labels": labels,
    }
    zones: list[dict[str, Any]] = [zone]
    if query.get("scope") == "all":
        replaced = {query.get("replace", "").strip(), zone["name"]}
        zones = [
            *(_plain(z) for z in existing if z.name not in replaced),
            zone,
        ]
    text = dump_toml({"zones": zones})
    checked, check_problems = check_toml(text)
    all_problems = problems + check_problems
    return DraftResult("" if all_problems else text, all_problems, checked)


def _plain(zone: ZoneSection) -> dict[str, Any]:
    return {
        "name": zone.name,
        "points": [list(p) for p in zone.points],
        "inertia": zone.inertia,
        "labels": list(zone.labels),
    }


def check_toml(text: str) -> tuple[tuple[ZoneSection, ...], list[str]]:
    """Load the TOML the way `edgecam config check` does; the zones, or the problems."""
    try:
        config = EdgecamConfig.model_validate(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:  # pragma: no cover - dump_toml writes valid TOML
        return (), [f"not valid TOML: {exc}"]
    except ValidationError as exc:
        lines = describe_errors(exc, EdgecamConfig, origin="zone")
        return (), [line.removeprefix("zone: ") for line in lines]
    return config.zones, []


def membership(zone: ZoneSection, view: LiveView | None) -> list[dict[str, Any]]:
    """Every object in the latest frame, and whether it is inside the zone right now.

    Tracked objects (events on) carry their track id; without the tracker the raw detections
    are tested, by the same bottom-centre rule.
    """
    if view is None or not isinstance(view.result.output, Detections):
        return []
    if view.tracks:
        observed = [t for t in view.tracks if t.observed]
        boxes = [t.xyxy for t in observed]
        labels = [t.label for t in observed]
        ids: list[str | None] = [short_id(t.track_id) if t.confirmed else None for t in observed]
        scores = [t.score for t in observed]
    else:
        dets = view.result.output
        boxes = [(r[0], r[1], r[2], r[3]) for r in dets.xyxy.astype(float).tolist()]
        labels, ids = list(dets.label), [None] * len(dets)
        scores = [float(s) for s in dets.score.tolist()]
    if not boxes:
        return []
    inside = Zones([zone.to_zone()]).contains(boxes, labels)[:, 0]
    points = bottom_centre(boxes).round(DIGITS).tolist()
    return [
        {
            "label": labels[i],
            "track": ids[i],
            "score": round(scores[i], 3),
            "point": points[i],
            "inside": bool(inside[i]),
        }
        for i in range(len(boxes))
    ]
