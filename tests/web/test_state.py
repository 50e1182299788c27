"""The hand-off between the pipeline and the page stays bounded however long the job runs."""

from __future__ import annotations

from edgecam.web.state import MAX_LIVE_CROPS, BestShots, EventLog
from tests.web.serving import served


def _event(i: int, label: str = "person") -> dict[str, object]:
    return {"type": "event", "event": "new", "track_id": f"r-{i}", "label": label, "seq": 0}


def test_event_log_keeps_the_newest_and_filters_by_label() -> None:
    log = EventLog(10, device_id="cam1", run_id="r", model="m")
    for i in range(25):
        log.add(_event(i, "car" if i % 5 == 0 else "person"))
    recent = log.recent()
    assert len(recent) == 10 and recent[0]["track_id"] == "r-24"
    assert [e["seq"] for e in recent] == list(range(24, 14, -1))  # the web stream's own seq
    assert {e["label"] for e in log.recent("car")} == {"car"}
    assert log.recent(limit=3) == recent[:3]
    assert log.labels() == ["car", "person"]


def test_best_shots_are_bounded_and_end_as_jpeg() -> None:
    with served(events_kept=10) as web:
        web.feed(40)  # person tracks come and go (the walk wraps), the dog stays
        shots: BestShots = web.sink.shots
        assert len(shots.known()) <= 10 + MAX_LIVE_CROPS
        for track in shots.known():
            jpeg = shots.jpeg(track)
            assert jpeg is not None and jpeg.startswith(b"\xff\xd8")
