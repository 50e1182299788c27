"""Occupancy from tracked objects: per-label and per-zone counts, and zone entries/exits.

The input is the tracker's own lifecycle (``new`` / ``update`` / ``end`` with the zones the
object is in now). Checked: only changes are reported, a label or zone pair that does not
change is not repeated, zone transitions come out as ``new``/``end`` per zone, an unknown or
repeated message cannot make a count drift, and, over a real EventEngine run with a zone,
label counts equal the engine's own counts at every frame.
"""

from __future__ import annotations

import numpy as np

from edgecam.core.events import EventEngine, events_to_dict
from edgecam.core.filters import LabelRule, ObjectFilter
from edgecam.core.occupancy import Occupancy, OccupancyStep, ZoneEvent
from edgecam.core.tracking import Tracker
from edgecam.core.zones import Zone
from edgecam.types import Detections, Result


def test_new_update_end_report_only_changes() -> None:
    occ = Occupancy()
    step = occ.apply("new", "t1", "person", ["driveway"])
    assert step == OccupancyStep(
        counts={"person": 1},
        zone_counts={("driveway", "person"): 1},
        zone_events=(ZoneEvent("new", "driveway"),),
    )
    # A second person outside any zone: the label count changes, the zone count does not.
    assert occ.apply("new", "t2", "person", []) == OccupancyStep(counts={"person": 2})
    # t2 walks into the driveway, t1 walks out into the porch: per-zone transitions.
    assert occ.apply("update", "t2", "person", ["driveway"]) == OccupancyStep(
        zone_counts={("driveway", "person"): 2}, zone_events=(ZoneEvent("new", "driveway"),)
    )
    step = occ.apply("update", "t1", "person", ["porch"])
    assert step.counts == {}
    assert step.zone_counts == {("driveway", "person"): 1, ("porch", "person"): 1}
    assert step.zone_events == (ZoneEvent("new", "porch"), ZoneEvent("end", "driveway"))
    # Nothing changed (a better-score update): nothing to publish.
    assert occ.apply("update", "t1", "person", ["porch"]) == OccupancyStep()
    step = occ.apply("end", "t1", "person", ["porch"])
    assert step.counts == {"person": 1}
    assert step.zone_counts == {("porch", "person"): 0}
    assert step.zone_events == (ZoneEvent("end", "porch"),)
    assert (occ.count("person"), occ.zone_count("driveway", "person")) == (1, 1)
    assert occ.labels() == {"person"} and occ.zone_labels() == {("driveway", "person")}


def test_labels_are_counted_apart() -> None:
    occ = Occupancy()
    occ.apply("new", "a", "person", ["yard"])
    step = occ.apply("new", "b", "car", ["yard"])
    assert step.counts == {"car": 1}
    assert step.zone_counts == {("yard", "car"): 1}
    assert occ.zone_count("yard", "person") == 1


def test_repeats_and_strays_cannot_make_counts_drift() -> None:
    occ = Occupancy()
    occ.apply("new", "t1", "person", [])
    assert occ.apply("new", "t1", "person", []) == OccupancyStep()  # a QoS-style duplicate
    assert occ.apply("end", "t9", "person", []).counts == {}  # end of a track never seen
    assert occ.apply("bogus", "t2", "person", ["x"]) == OccupancyStep()
    occ.apply("end", "t1", "person", [])
    assert occ.apply("end", "t1", "person", []) == OccupancyStep()
    assert occ.count("person") == 0
    # An update for a track whose new was missed counts it from then on.
    assert occ.apply("update", "t3", "car", ["lot"]).counts == {"car": 1}


def _detections(boxes: list[list[float]], label: str = "person") -> Detections:
    n = len(boxes)
    return Detections(
        np.asarray(boxes, np.float32).reshape(n, 4),
        np.zeros(n, np.int32),
        np.full(n, 0.8, np.float32),
        (label,) * n,
    )


def test_matches_the_event_engine_over_a_walk_through_a_zone() -> None:
    """Two people walk left to right through a zone on the right half; one stops early."""
    engine = EventEngine(
        Tracker(max_disappeared=3),
        ObjectFilter(LabelRule(confirm_frames=3, confirm_score=0.6)),
        [Zone("right", ((0.5, 0.0), (1.0, 0.0), (1.0, 1.0), (0.5, 1.0)), inertia=2)],
    )
    occ = Occupancy()
    zone_events: list[tuple[str, str]] = []
    frames = 60
    for seq in range(frames + 5):
        boxes = []
        if seq < frames:
            x = 0.05 + 0.8 * seq / frames
            boxes.append([x, 0.1, x + 0.1, 0.4])
        if seq < 30:
            x = 0.05 + 0.8 * seq / frames
            boxes.append([x, 0.55, x + 0.1, 0.9])
        result = Result(seq, 1_700_000_000 + seq / 10, 0.0, "ssd", 640, 480, _detections(boxes))
        step = engine.update(result)
        for event in step.events:
            d = events_to_dict(event, "cam1")
            change = occ.apply(d["event"], d["track_id"], d["label"], d["zones"])
            zone_events += [(z.kind, z.zone) for z in change.zone_events]
        assert occ.count("person") == engine.counts.get("person", 0)
    assert occ.count("person") == 0
    # Only the first person reached the right half: one entry, one exit.
    assert zone_events == [("new", "right"), ("end", "right")]
