"""The zone editor's server half: what the page shows is exactly what the config loader
accepts, and membership is the event engine's own rule (box bottom-centre, label filter)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgecam.config import load_config
from edgecam.config.zones import ZoneSection
from edgecam.core.zones import Zones
from edgecam.web.state import LiveView
from edgecam.web.zones import build_draft, membership
from tests.web.serving import LABELS, ZONE, engine, picture, walking_result

SQUARE = "0.1,0.5;0.9,0.5;0.9,1;0.1,1"


def _draft(**query: str):  # type: ignore[no-untyped-def]
    return build_draft(query, existing=(ZONE,), known_labels=LABELS)


def test_drawn_zone_round_trips_through_the_config_loader(tmp_path: Path) -> None:
    draft = _draft(name="porch", points=SQUARE, labels="person,dog", inertia="4")
    assert draft.ok, draft.problems
    path = tmp_path / "zones.toml"
    path.write_text(draft.toml)
    [zone] = load_config(path).zones
    assert zone == ZoneSection.model_validate(
        {
            "name": "porch",
            "points": [[0.1, 0.5], [0.9, 0.5], [0.9, 1.0], [0.1, 1.0]],
            "inertia": 4,
            "labels": ["person", "dog"],
        }
    )
    assert draft.toml.startswith('[[zones]]\nname = "porch"\n')


def test_all_zones_replace_the_edited_one(tmp_path: Path) -> None:
    draft = _draft(name="right2", points=SQUARE, scope="all", replace="right")
    path = tmp_path / "zones.toml"
    path.write_text(draft.toml)
    assert [z.name for z in load_config(path).zones] == ["right2"]
    added = _draft(name="porch", points=SQUARE, scope="all")
    path.write_text(added.toml)
    assert [z.name for z in load_config(path).zones] == ["right", "porch"]


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        # a bow tie: edges cross
        (
            {"name": "z", "points": "0.1,0.1;0.9,0.9;0.9,0.1;0.1,0.9"},
            "edges 0-1 and 2-3 cross: list the points in order around the zone",
        ),
        ({"name": "z", "points": "0.1,0.1;0.9,0.9"}, "zones[0].points: "),
        ({"name": "z", "points": "0.1,0.1;1.5,0.5;0.5,0.9"}, "outside the frame (0..1)"),
        ({"name": "z", "points": "0.1;0.2,0.3"}, "point 1: expected x,y"),
        ({"name": "bad name!", "points": SQUARE}, "zones[0].name: 'bad name!' does not match"),
        ({"name": "z", "points": SQUARE, "labels": "unicorn"}, "unicorn not in the model"),
        ({"name": "z", "points": SQUARE, "inertia": "0"}, "zones[0].inertia: 0 is out of range"),
        ({"name": "z", "points": ";".join(["0.5,0.5"] * 70)}, "at most 64 points"),
    ],
)
def test_bad_drafts_say_what_is_wrong(query: dict[str, str], problem: str) -> None:
    draft = _draft(**query)
    assert not draft.ok and draft.toml == ""
    assert any(problem in p for p in draft.problems), draft.problems


def test_membership_is_the_engines_rule() -> None:
    tracker, pixels = engine(), picture()
    view = None
    for seq in range(20):
        result = walking_result(seq, pixels)
        tracker.update(result)
        view = LiveView(result, tracker.tracks(), 0.0)
    assert view is not None
    zone = ZoneSection.model_validate(
        {"name": "left", "points": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]], "labels": ["dog"]}
    )
    rows = membership(zone, view)
    observed = [t for t in view.tracks if t.observed]
    expected = Zones([zone.to_zone()]).contains(
        [t.xyxy for t in observed], [t.label for t in observed]
    )[:, 0]
    assert [r["inside"] for r in rows] == expected.tolist()
    by_label = {r["label"]: r for r in rows}
    assert by_label["dog"]["inside"] and not by_label["person"]["inside"]  # label filter
    assert by_label["person"]["track"] == "1"
    assert np.allclose(by_label["dog"]["point"], [0.15, 0.9])  # the bottom-centre
