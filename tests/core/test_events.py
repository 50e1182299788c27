"""Event engine: detections per frame in, new/update/end lifecycle events and counts out.

Scenes are synthetic (boxes moving along known paths, or asset photos pasted on a canvas and
moved, then run through the real SSD detector) so the expected tracks, zone crossings and
snapshots are known; the last test runs the real detector over part of the asset video
(people walk in one at a time; a window is often mis-detected as a ``tv`` at ~0.5).

What is checked: ``new`` only after confirmation (a one-frame false positive yields nothing),
every ``new`` paired with exactly one ``end`` (gone, or flush at shutdown), ``update`` on zone
enter/leave (timed within the zone's inertia) and on a clearly better score, retained-count
output only on change, the best frame kept as a private copy, and the JSON-ready dict.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from edgecam.core.annotate import SnapshotOptions, crop_rect, event_snapshot
from edgecam.core.events import Event, EventEngine, events_to_dict
from edgecam.core.filters import LabelRule, ObjectFilter
from edgecam.core.tracking import Tracker
from edgecam.core.zones import Zone
from edgecam.errors import ConfigError
from edgecam.types import Classification, Detections, Frame, Result

Image = npt.NDArray[np.uint8]
T0 = 1_700_000_000.0  # frame times are epoch seconds
W, H = 640, 480


def dets(rows: list[tuple[str, float, list[float]]]) -> Detections:
    return Detections(
        np.asarray([r[2] for r in rows], np.float32).reshape(len(rows), 4),
        np.array([{"person": 0, "car": 2, "cat": 16}.get(r[0], 0) for r in rows], np.int32),
        np.asarray([r[1] for r in rows], np.float32),
        tuple(r[0] for r in rows),
    )


def result(
    seq: int, detections: Detections, fps: float = 10.0, size: tuple[int, int] = (W, H)
) -> Result:
    return Result(seq, T0 + seq / fps, 0.0, "ssd", size[0], size[1], detections)


def walk(
    n: int, x0: float, x1: float, width: float = 0.1, y: tuple[float, float] = (0.3, 0.8)
) -> list[list[float]]:
    return [[x, y[0], x + width, y[1]] for x in np.linspace(x0, x1, n).tolist()]


def run(engine: EventEngine, frames: list[Detections]) -> list[Event]:
    events: list[Event] = []
    for seq, d in enumerate(frames):
        events.extend(engine.update(result(seq, d)).events)
    return events


def assert_balanced(events: list[Event]) -> None:
    """Every track: exactly one new, first; exactly one end, last."""
    by_track: dict[str, list[str]] = {}
    for e in events:
        by_track.setdefault(e.track_id, []).append(e.type)
    for track_id, types in by_track.items():
        assert types[0] == "new" and types[-1] == "end", (track_id, types)
        assert types.count("new") == 1 and types.count("end") == 1, (track_id, types)


def test_new_waits_for_confirmation_and_end_follows_disappearance() -> None:
    engine = EventEngine(Tracker(max_disappeared=5), ObjectFilter(LabelRule(confirm_frames=5)))
    boxes = walk(20, 0.1, 0.6)
    frames = [dets([("person", 0.8, b)]) for b in boxes] + [Detections.empty()] * 7
    events = run(engine, frames)
    assert [e.type for e in events] == ["new", "end"]
    new, end = events
    assert new.seq == 2  # third observation: 3 of 5 (zero-padded) scores reach 0.6
    assert new.reasons == ("confirmed",) and end.reasons == ("gone",)
    assert end.seq == 19 + 6  # the 6th empty frame exceeds max_disappeared=5
    assert end.last_seen == pytest.approx(T0 + 1.9) and end.first_seen == pytest.approx(T0)
    assert end.duration == pytest.approx(1.9)
    assert end.xyxy == pytest.approx(tuple(boxes[-1]))
    assert new.event_id != end.event_id and new.track_id == end.track_id


def test_one_frame_false_positive_produces_no_event_and_no_count() -> None:
    engine = EventEngine(Tracker(max_disappeared=3))
    frames = [Detections.empty()] * 3 + [dets([("tv", 0.99, [0.0, 0.0, 0.4, 0.4])])]
    frames += [Detections.empty()] * 10
    steps = [engine.update(result(i, d)) for i, d in enumerate(frames)]
    assert all(not s.events and not s.counts for s in steps)
    assert engine.flush().events == ()


def test_low_scoring_track_is_never_confirmed() -> None:
    # A steady 0.55 detection (a poster mistaken for a person) passes min_score 0.5 but its
    # median stays below confirm_score 0.6.
    engine = EventEngine()
    events = run(engine, [dets([("person", 0.55, [0.1, 0.1, 0.3, 0.6])])] * 50)
    assert events == []


def test_crossing_objects_of_different_labels_make_balanced_events() -> None:
    engine = EventEngine(Tracker(max_disappeared=4))
    person, car = walk(30, 0.0, 0.8, 0.2), walk(30, 0.8, 0.0, 0.2)
    frames = [dets([("person", 0.8, p), ("car", 0.7, c)]) for p, c in zip(person, car, strict=True)]
    events = run(engine, [*frames, *[Detections.empty()] * 5])
    assert Counter((e.label, e.type) for e in events) == {
        ("person", "new"): 1,
        ("person", "end"): 1,
        ("car", "new"): 1,
        ("car", "end"): 1,
    }
    assert_balanced(events)


def test_flush_ends_every_open_confirmed_track_and_resets_counts() -> None:
    engine = EventEngine()
    frames = [dets([("person", 0.8, [0.1, 0.1, 0.3, 0.6]), ("car", 0.9, [0.5, 0.5, 0.9, 0.9])])] * 4
    events = run(engine, frames)
    assert engine.counts == {"car": 1, "person": 1}
    step = engine.flush()
    assert sorted(e.label for e in step.events) == ["car", "person"]
    assert all(e.type == "end" and e.reasons == ("shutdown",) for e in step.events)
    assert_balanced(events + list(step.events))
    assert step.counts == {"car": 0, "person": 0}
    assert engine.flush().events == ()  # nothing left to end
    # The engine keeps working after a flush, with fresh ids.
    later = run(engine, frames)
    assert {e.track_id for e in later}.isdisjoint({e.track_id for e in events})


def test_counts_are_reported_only_when_they_change() -> None:
    engine = EventEngine(Tracker(max_disappeared=2))
    one = dets([("person", 0.8, [0.1, 0.1, 0.3, 0.6])])
    two = dets([("person", 0.8, [0.1, 0.1, 0.3, 0.6]), ("person", 0.8, [0.6, 0.1, 0.8, 0.6])])
    frames = [one] * 5 + [two] * 5 + [one] * 5 + [Detections.empty()] * 4
    changes = [(i, dict(engine.update(result(i, d)).counts)) for i, d in enumerate(frames)]
    assert [(i, c) for i, c in changes if c] == [
        (2, {"person": 1}),  # first person confirmed
        (7, {"person": 2}),  # second person confirmed
        (12, {"person": 1}),  # second person gone (3rd miss > max_disappeared=2)
        (17, {"person": 0}),  # first person gone
    ]


def test_zone_enter_and_leave_times_match_the_walk() -> None:
    # A person walks left to right across a "door" zone spanning x 0.4..0.6; the feet
    # (bottom-centre) are inside on frames whose centre x is in that range.
    zone = Zone("door", ((0.4, 0.0), (0.6, 0.0), (0.6, 1.0), (0.4, 1.0)), inertia=3)
    engine = EventEngine(zones=[zone])
    boxes = walk(41, 0.0, 0.8, 0.2)
    events = run(engine, [dets([("person", 0.8, b)]) for b in boxes])
    centres = [(b[0] + b[2]) / 2 for b in boxes]
    truth_in = next(i for i, c in enumerate(centres) if c > 0.4)
    truth_out = next(i for i, c in enumerate(centres) if c > 0.6)
    entered = [e for e in events if "entered_zone" in e.reasons]
    left = [e for e in events if "left_zone" in e.reasons]
    assert len(entered) == 1 and len(left) == 1
    assert 0 <= entered[0].seq - truth_in < zone.inertia
    assert 0 <= left[0].seq - truth_out < zone.inertia
    assert entered[0].entered == ("door",) and entered[0].zones == ("door",)
    assert left[0].left == ("door",) and left[0].zones == ()


def test_new_event_lists_zones_the_object_is_already_in() -> None:
    zone = Zone("porch", ((0.0, 0.5), (1.0, 0.5), (1.0, 1.0), (0.0, 1.0)), inertia=2)
    engine = EventEngine(zones=[zone])
    events = run(engine, [dets([("person", 0.8, [0.4, 0.3, 0.6, 0.9])])] * 4)
    assert events[0].type == "new" and events[0].zones == ("porch",)
    assert events[0].entered == ("porch",)
    assert not any("entered_zone" in e.reasons for e in events)  # not announced twice


def test_update_on_clearly_better_score_only() -> None:
    engine = EventEngine(score_margin=0.1)
    box = [0.1, 0.1, 0.3, 0.6]
    scores = [0.7, 0.7, 0.7, 0.75, 0.79, 0.81, 0.82, 0.95]
    events = run(engine, [dets([("person", s, box)]) for s in scores])
    assert [(e.type, e.seq) for e in events] == [("new", 2), ("update", 5), ("update", 7)]
    assert events[1].reasons == ("better_score",)
    assert events[2].best_score == pytest.approx(0.95)


def test_best_frame_is_a_private_copy_shared_by_tracks_of_the_same_frame() -> None:
    engine = EventEngine()
    pixels = np.full((H, W, 3), 50, np.uint8)
    d = dets([("person", 0.8, [0.1, 0.1, 0.3, 0.6]), ("car", 0.9, [0.5, 0.5, 0.9, 0.9])])
    frame = Frame(pixels, 0, T0, 0.0, pixel_format="BGR")
    step = engine.update(result(0, d), frame)
    pixels[:] = 0  # the capture buffer gets reused
    for seq in (1, 2):
        step = engine.update(result(seq, d), Frame(pixels, seq, T0, 0.0, pixel_format="BGR"))
    person, car = sorted(step.events, key=lambda e: e.label)[::-1]
    assert person.best.seq == 0 and person.best.frame is not None
    assert int(person.best.frame.pixels.max()) == 50  # unaffected by the later overwrite
    assert person.best.frame is car.best.frame  # one copy for both tracks
    assert person.best.frame.pixels is not pixels


def test_no_pixels_kept_when_frames_are_not_wanted() -> None:
    engine = EventEngine(keep_frames=False)
    events: list[Event] = []
    for seq in range(3):
        frame = Frame(np.zeros((H, W, 3), np.uint8), seq, T0, 0.0)
        events += engine.update(
            result(seq, dets([("cat", 0.9, [0.1, 0.1, 0.5, 0.5])])), frame
        ).events
    assert events[0].best.frame is None
    assert event_snapshot(events[0], SnapshotOptions()) is None


def test_frame_must_belong_to_the_result() -> None:
    frame = Frame(np.zeros((H, W, 3), np.uint8), 5, T0, 0.0)
    with pytest.raises(ValueError, match="seq 5"):
        EventEngine().update(result(4, Detections.empty()), frame)


def test_classification_results_are_a_config_error() -> None:
    cls = Classification(np.array([1], np.int32), np.array([0.9], np.float32), ("cat",))
    with pytest.raises(ConfigError, match="detection model"):
        EventEngine().update(Result(0, T0, 0.0, "mobilenet", W, H, cls))


def test_events_to_dict_is_json_ready_and_documented() -> None:
    engine = EventEngine(
        Tracker(id_prefix="r1"), zones=[Zone("all", ((0, 0), (1, 0), (1, 1), (0, 1)), 1)]
    )
    box = [0.1, 0.2, 0.3, 1.02]  # detector boxes may overshoot the frame slightly
    events = run(engine, [dets([("person", 0.8123456, box)])] * 3)
    (new,) = events
    payload = events_to_dict(new, "cam-1", run_id="r1", model="ssd", seq=7)
    assert json.loads(json.dumps(payload)) == payload
    assert payload["type"] == "event" and payload["event"] == "new"
    assert payload["event_id"] == "r1-1:0" and payload["track_id"] == "r1-1"
    assert (payload["device_id"], payload["run_id"], payload["model"], payload["seq"]) == (
        "cam-1",
        "r1",
        "ssd",
        7,
    )
    assert payload["frame_seq"] == 2 and payload["label"] == "person" and payload["class_id"] == 0
    assert payload["score"] == 0.8123 and payload["best_score"] == 0.8123
    assert payload["first_seen"] == pytest.approx(T0) and payload["duration_s"] == pytest.approx(
        0.2
    )
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", payload["last_seen_at"])
    assert payload["frame"] == {"width": W, "height": H}
    assert payload["box"] == {"xmin": 0.1, "ymin": 0.2, "xmax": 0.3, "ymax": 1.02}
    assert payload["box_px"] == {"xmin": 64, "ymin": 96, "xmax": 192, "ymax": H}  # clipped
    assert (payload["zones"], payload["entered"], payload["left"]) == (["all"], ["all"], [])
    assert payload["reasons"] == ["confirmed"]
    assert payload["best"]["frame_seq"] == 0 and payload["best"]["box_px"]["xmax"] == 192


# ---- real detector -----------------------------------------------------------------------


class SSD:
    """The asset SSD through the TFLite interpreter directly (outputs resolved by name)."""

    def __init__(self, assets: Path) -> None:
        from ai_edge_litert.interpreter import Interpreter

        model = assets / "models" / "coco_ssd_mobilenet_v1_1.0_quant_2018_06_29.tflite"
        self.labels = (assets / "labels" / "coco_labels.txt").read_text().splitlines()
        self.interp = Interpreter(model_path=str(model), num_threads=2)
        self.interp.allocate_tensors()
        self.input = self.interp.get_input_details()[0]["index"]
        by_suffix = {
            d["name"].rpartition(":")[2] if ":" in d["name"] else "": d["index"]
            for d in self.interp.get_output_details()
        }
        self.boxes, self.classes, self.scores, self.count = (
            by_suffix[k] for k in ("", "1", "2", "3")
        )

    def __call__(self, bgr: Image, min_score: float = 0.3) -> Detections:
        rgb = cv2.resize(
            cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), (300, 300), interpolation=cv2.INTER_LINEAR
        )
        self.interp.set_tensor(self.input, rgb[None])
        self.interp.invoke()
        n = int(self.interp.get_tensor(self.count)[0])
        yxyx = self.interp.get_tensor(self.boxes)[0, :n]
        classes = self.interp.get_tensor(self.classes)[0, :n].astype(np.int32)
        scores = self.interp.get_tensor(self.scores)[0, :n].astype(np.float32)
        keep = scores >= min_score
        xyxy = np.clip(yxyx[keep][:, [1, 0, 3, 2]], 0.0, 1.0).astype(np.float32)
        return Detections(
            xyxy, classes[keep], scores[keep], tuple(self.labels[c] for c in classes[keep])
        )


@pytest.fixture(scope="module")
def ssd(assets: Path) -> SSD:
    return SSD(assets)


def crossing_scene(
    asset_images: Path, n: int = 36
) -> tuple[list[Image], list[tuple[float, float, float, float]]]:
    """A cat walks right, a person walks left in front of it; returns frames and cat boxes."""
    cat = cv2.resize(cv2.imread(str(asset_images / "chelsea.png")), (240, 160))
    person = cv2.resize(cv2.imread(str(asset_images / "grace_hopper.png")), (150, 176))
    cw, ch = 800, 450
    frames, cat_boxes = [], []
    for i in range(n):
        canvas = np.full((ch, cw, 3), 110, np.uint8)
        cx = round(20 + (cw - 260) * i / (n - 1))
        px = round(cw - 170 - (cw - 190) * i / (n - 1))
        canvas[250:410, cx : cx + 240] = cat
        canvas[120:296, px : px + 150] = person  # in front, hiding the top of the cat
        frames.append(canvas)
        cat_boxes.append((cx / cw, 250 / ch, (cx + 240) / cw, 410 / ch))
    return frames, cat_boxes


def test_real_detector_crossing_scene_one_track_per_object_and_snapshot(
    ssd: SSD, asset_images: Path
) -> None:
    frames, cat_boxes = crossing_scene(asset_images)
    engine = EventEngine(Tracker(id_prefix="t"))
    events: list[Event] = []
    for seq, image in enumerate(frames):
        frame = Frame(image, seq, T0 + seq / 10, 0.0, pixel_format="BGR")
        step = engine.update(Result(seq, frame.timestamp, 0.0, "ssd", 800, 450, ssd(image)), frame)
        events.extend(step.events)
    events.extend(engine.flush().events)
    assert_balanced(events)
    tracks = {
        label: {e.track_id for e in events if e.label == label} for label in ("cat", "person")
    }
    assert len(tracks["cat"]) == 1 and len(tracks["person"]) == 1  # no id switch at the crossing
    assert {e.label for e in events} <= {"cat", "person", "tie"}  # Grace Hopper does wear a tie

    end = next(e for e in events if e.label == "cat" and e.type == "end")
    options = SnapshotOptions(crop=True, margin=0.2, max_size=1000, quality=90)
    jpeg = event_snapshot(end, options)
    assert jpeg is not None and jpeg[:2] == b"\xff\xd8"
    image = np.asarray(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR), np.uint8)
    x0, y0, x1, y1 = crop_rect(end.best.xyxy, 800, 450, 0.2)
    assert image.shape == (y1 - y0, x1 - x0, 3)
    truth = cat_boxes[end.best.seq]  # where the cat really was in the best frame
    assert x0 <= truth[0] * 800 + 8 and truth[2] * 800 - 8 <= x1
    assert y0 <= truth[1] * 450 + 8 and truth[3] * 450 - 8 <= y1


@pytest.mark.slow
def test_real_detector_on_the_asset_video(ssd: SSD, asset_video: Path) -> None:
    # Frames 0..599 every 2nd frame (the pipeline "dropped" one in two): three people walk in
    # and out one after another (visits ~62-196, ~229-445, ~504-...). Defaults throughout:
    # nothing here is tuned to this video.
    capture = cv2.VideoCapture(str(asset_video))
    engine = EventEngine(Tracker(id_prefix="video"))
    events: list[Event] = []
    for index in range(600):
        if index % 2:
            assert capture.grab()
            continue
        ok, image = capture.read()
        assert ok, f"frame {index} unreadable"
        height, width = image.shape[:2]
        detections = ssd(np.asarray(image, np.uint8))
        res = Result(index, T0 + index / 10, 0.0, "ssd", width, height, detections)
        events.extend(engine.update(res, None, frames_skipped=0 if index == 0 else 1).events)
    capture.release()
    events.extend(engine.flush().events)
    assert_balanced(events)
    news = Counter(e.label for e in events if e.type == "new")
    assert news["person"] == 3, news  # one track per visit: no id switch, no duplicate
    assert news["tv"] == 0  # the ~0.5 "tv" on the window never reaches confirm_score
    for e in events:
        if e.type == "end" and e.label == "person":
            assert e.duration > 5.0  # whole visits, not fragments
