"""`[events]`, `[tracking]`, `[objects]`, `[[zones]]`, `[snapshots]`: parsed from TOML text.

Checks: the defaults equal the pure core's defaults (one source of truth for behaviour),
per-label overrides inherit unset keys, every bound and cross-field rule names the field, zone
polygons are validated (count, range, self-intersection, unique names), unknown keys are
errors, and the sections build a working EventEngine.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import tomllib
from pydantic import ValidationError

from edgecam.config.base import Section
from edgecam.config.events import EventsSection
from edgecam.config.objects import LabelFilterSection, ObjectsSection
from edgecam.config.snapshots import SnapshotsSection
from edgecam.config.tracking import TrackingSection
from edgecam.config.zones import ZoneList, ZoneSection
from edgecam.core.annotate import SnapshotOptions
from edgecam.core.events import Event
from edgecam.core.filters import LabelRule, ObjectFilter
from edgecam.core.tracking import Tracker
from edgecam.errors import ConfigError
from edgecam.sinks.events import build_event_engine, check_config_labels
from edgecam.types import Detections, Result


class Root(Section):
    """The slice of the top-level config these sections occupy (EdgecamConfig adds them)."""

    events: EventsSection = EventsSection.model_validate({})
    tracking: TrackingSection = TrackingSection.model_validate({})
    objects: ObjectsSection = ObjectsSection.model_validate({})
    zones: ZoneList = ()
    snapshots: SnapshotsSection = SnapshotsSection.model_validate({})


EXAMPLE = """
[events]
enabled = true
score_margin = 0.1

[tracking]
max_disappeared = 20

[objects]
deny = ["tv"]
confirm_score = 0.65

[objects.filters.person]
min_area = 0.005
max_ratio = 1.5

[[zones]]
name = "driveway"
points = [[0.1, 0.55], [0.9, 0.55], [0.95, 1.0], [0.05, 1.0]]
labels = ["car"]

[[zones]]
name = "door"
points = [[0.0, 0.0], [0.2, 0.0], [0.2, 0.6]]
inertia = 1

[snapshots]
enabled = true
crop = true
quality = 70
dir = "/tmp/snaps"
"""


def load(text: str) -> Root:
    return Root.model_validate(tomllib.loads(text))


def locations(exc: ValidationError) -> list[str]:
    return [".".join(str(p) for p in err["loc"]) for err in exc.errors()]


def test_defaults_match_the_pure_core() -> None:
    root = Root()
    assert root.events.enabled is False  # opt-in
    assert root.objects.rule("anything") == LabelRule()
    tracker = Tracker()
    t = root.tracking
    assert (t.iou_threshold, t.max_disappeared, t.velocity_smoothing, t.match_buffer) == (
        tracker.iou_threshold,
        tracker.max_disappeared,
        tracker.velocity_smoothing,
        tracker.match_buffer,
    )
    assert root.objects.duplicate_overlap == ObjectFilter().duplicate_overlap
    assert root.snapshots.options() == SnapshotOptions()


def test_example_config_parses_and_overrides_inherit() -> None:
    root = load(EXAMPLE)
    person, dog = root.objects.rule("person"), root.objects.rule("dog")
    assert person.min_area == 0.005 and person.max_ratio == 1.5
    assert person.confirm_score == 0.65  # inherited from [objects]
    assert dog.min_area == 0.0 and dog.confirm_score == 0.65
    assert [z.name for z in root.zones] == ["driveway", "door"]
    assert root.zones[0].to_zone().labels == frozenset({"car"})
    assert root.snapshots.options().quality == 70 and root.snapshots.options().crop


def test_comma_separated_lists_from_the_command_line() -> None:
    section = ObjectsSection.model_validate({"deny": "tv, cell phone", "allow": ""})
    assert section.deny == ("tv", "cell phone") and section.allow == ()


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("[tracking]\niou_threshold = 0", "tracking.iou_threshold"),  # matches anything
        ("[tracking]\nmax_disappeared = -1", "tracking.max_disappeared"),
        ("[tracking]\nmax_disapeared = 5", "tracking.max_disapeared"),  # typo: unknown key
        ("[objects]\nmin_score = 1.2", "objects.min_score"),
        ("[objects]\nconfirm_frames = 0", "objects.confirm_frames"),
        ("[objects.filters.person]\nmin_area = 2", "objects.filters.person.min_area"),
        ("[objects.filters.person]\nthreshold = 0.7", "objects.filters.person.threshold"),
        ("[snapshots]\nquality = 0", "snapshots.quality"),
        ("[snapshots]\nquality = 101", "snapshots.quality"),
        ("[snapshots]\nmax_files = 0", "snapshots.max_files"),
        ("[events]\nscore_margin = 2", "events.score_margin"),
    ],
)
def test_bounds_and_unknown_keys_name_the_field(text: str, where: str) -> None:
    with pytest.raises(ValidationError) as info:
        load(text)
    assert where in locations(info.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[objects]\nallow = ["tv"]\ndeny = ["tv"]', "both allow and deny: tv"),
        ("[objects]\nmin_area = 0.5\nmax_area = 0.1", "objects: min_area 0.5 > max_area 0.1"),
        (
            "[objects]\nmax_ratio = 1.0\n[objects.filters.car]\nmin_ratio = 2.0",
            "objects.filters.car: min_ratio 2.0 > max_ratio 1.0",
        ),
    ],
)
def test_cross_field_rules(text: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace(".", r"\.")):
        load(text)


@pytest.mark.parametrize(
    ("zone", "message"),
    [
        ({"name": "a", "points": [[0, 0], [1, 0]]}, "at least 3"),
        ({"name": "a", "points": [[0, 0], [1.5, 0], [1, 1]]}, "in [0, 1]"),
        ({"name": "a", "points": [[0, 0], [1, 1], [1, 0], [0, 1]]}, "cross"),
        ({"name": "a b", "points": [[0, 0], [1, 0], [1, 1]]}, "pattern"),  # not MQTT-safe
        ({"name": "a", "points": [[0, 0], [1, 0], [1, 1]], "inertia": 0}, "greater than or equal"),
        ({"points": [[0, 0], [1, 0], [1, 1]]}, "name"),
    ],
)
def test_zone_validation(zone: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("[", r"\[").replace("]", r"\]")):
        ZoneSection.model_validate(zone)


def test_zone_names_must_be_unique() -> None:
    text = "[[zones]]\nname = 'a'\npoints = [[0,0],[1,0],[1,1]]\n" * 2
    with pytest.raises(ValidationError, match="repeated: a"):
        load(text)


def test_sections_are_immutable() -> None:
    with pytest.raises(ValidationError):
        TrackingSection.model_validate({}).max_disappeared = 3  # type: ignore[misc]


def test_check_config_labels_catches_typos() -> None:
    root = load(EXAMPLE)
    check_config_labels(root.objects, root.zones, ["person", "car", "tv", "dog"])
    with pytest.raises(ConfigError, match=r"unknown label.*persn"):
        check_config_labels(ObjectsSection.model_validate({"allow": ["persn"]}), (), ["person"])


def test_sections_build_a_working_engine() -> None:
    root = load(EXAMPLE)
    engine = build_event_engine(
        root.tracking, root.objects, root.zones, root.events, id_prefix="run9"
    )
    assert engine.tracker.max_disappeared == 20 and engine.score_margin == 0.1
    assert len(engine.zones) == 2
    person = Detections(
        np.array([[0.15, 0.1, 0.21, 0.5]], np.float32),
        np.zeros(1, np.int32),
        np.array([0.9], np.float32),
        ("person",),
    )
    tv = Detections(
        np.array([[0.5, 0.1, 0.9, 0.4]], np.float32),
        np.zeros(1, np.int32),
        np.array([0.99], np.float32),
        ("tv",),
    )
    events: list[Event] = []
    for seq in range(4):
        for dets in (person, tv):
            events += engine.update(Result(seq, float(seq), 0.0, "ssd", 640, 480, dets)).events
    (new,) = events  # tv is denied; feet at (0.18, 0.5) are inside the "door" triangle
    assert new.track_id == "run9-1" and new.zones == ("door",)
    unused = LabelFilterSection.model_validate({})
    assert all(v is None for v in unused.model_dump().values())
