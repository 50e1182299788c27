"""Snapshots: the event's best frame drawn, cropped, shrunk and JPEG-encoded.

Real photos from the assets are pasted on a canvas at a known place, so the object's true box
is known; every JPEG is decoded back with cv2.imdecode and checked for size and content.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from edgecam.core.annotate import (
    SnapshotOptions,
    annotate,
    crop_rect,
    draw_box,
    event_snapshot,
    fit,
    label_colour,
    render_snapshot,
    snapshot_filename,
)
from edgecam.core.events import Event, EventEngine
from edgecam.types import Detections, Frame, Result

Image = npt.NDArray[np.uint8]
T0 = 1_700_000_000.0


def decode(jpeg: bytes) -> Image:
    assert jpeg[:2] == b"\xff\xd8", "not a JPEG"
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return np.asarray(image, np.uint8)


@pytest.fixture(scope="module")
def scene(asset_images: Path) -> tuple[Image, tuple[float, float, float, float]]:
    """A 960x540 BGR canvas with the owl photo pasted at a known place, and its normalized box."""
    owl = cv2.resize(cv2.imread(str(asset_images / "owl.jpg")), (256, 192))
    canvas = np.full((540, 960, 3), 90, np.uint8)
    canvas[300:492, 600:856] = owl
    return canvas, (600 / 960, 300 / 540, 856 / 960, 492 / 540)


def frame(pixels: Image, fmt: str = "BGR") -> Frame:
    return Frame(pixels, 0, T0, 0.0, pixel_format=fmt)  # type: ignore[arg-type]


def test_full_frame_is_shrunk_to_max_size_keeping_aspect(
    scene: tuple[Image, tuple[float, ...]],
) -> None:
    canvas, box = scene
    image = decode(
        render_snapshot(frame(canvas), box, "bird", SnapshotOptions(max_size=480), score=0.8)
    )
    assert image.shape == (270, 480, 3)


def test_crop_has_the_expected_size_and_contains_the_object(
    scene: tuple[Image, tuple[float, ...]],
) -> None:
    canvas, box = scene
    options = SnapshotOptions(crop=True, margin=0.25, max_size=2000, quality=95, draw=False)
    image = decode(render_snapshot(frame(canvas), box, "bird", options))
    x0, y0, x1, y1 = crop_rect(box, 960, 540, 0.25)
    assert image.shape == (y1 - y0, x1 - x0, 3)
    assert (x0, y0) == (536, 252) and (x1, y1) == (
        920,
        540,
    )  # grown by 64/48 px, clipped at the bottom
    # Same pixels as the source region (JPEG q95 noise only), so the object is in the crop.
    diff = np.abs(image.astype(np.int16) - canvas[y0:y1, x0:x1].astype(np.int16))
    assert diff.mean() < 3.0


def test_drawn_box_outlines_the_object_in_the_label_colour(
    scene: tuple[Image, tuple[float, ...]],
) -> None:
    canvas, box = scene
    image = canvas.copy()
    draw_box(image, box, "bird 0.82", label_colour("bird"))
    assert tuple(int(v) for v in image[400, 600]) == label_colour("bird")  # left edge
    assert tuple(int(v) for v in image[400, 856]) == label_colour("bird")  # right edge
    assert np.array_equal(image[:250, :500], canvas[:250, :500])  # far away: untouched


def test_annotate_draws_every_detection_on_a_copy(
    scene: tuple[Image, tuple[float, ...]],
) -> None:
    canvas, box = scene
    dets = Detections(
        np.array([box, (0.1, 0.1, 0.3, 0.4)], np.float32),
        np.array([15, 0], np.int32),
        np.array([0.8, 0.6], np.float32),
        ("bird", "person"),
    )
    before = canvas.copy()
    out = annotate(canvas, dets)
    assert np.array_equal(canvas, before)
    assert tuple(int(v) for v in out[400, 600]) == label_colour("bird")
    assert tuple(int(v) for v in out[150, 96]) == label_colour("person")


def test_rgb_bgr_and_yuv420_frames_give_the_same_picture(
    scene: tuple[Image, tuple[float, ...]],
) -> None:
    canvas, box = scene
    options = SnapshotOptions(max_size=960, quality=95, draw=False)
    from_bgr = decode(render_snapshot(frame(canvas, "BGR"), box, "bird", options)).astype(np.int16)
    rgb = np.ascontiguousarray(canvas[..., ::-1])
    from_rgb = decode(render_snapshot(frame(rgb, "RGB"), box, "bird", options)).astype(np.int16)
    yuv = np.asarray(cv2.cvtColor(canvas, cv2.COLOR_BGR2YUV_I420), np.uint8)
    from_yuv = decode(render_snapshot(frame(yuv, "YUV420"), box, "bird", options)).astype(np.int16)
    assert np.abs(from_rgb - from_bgr).mean() < 1.0
    assert np.abs(from_yuv - from_bgr).mean() < 4.0  # chroma subsampling


def test_quality_trades_size() -> None:
    noise = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    box = (0.1, 0.1, 0.5, 0.5)
    small = render_snapshot(frame(noise), box, "x", SnapshotOptions(quality=20))
    large = render_snapshot(frame(noise), box, "x", SnapshotOptions(quality=95))
    assert len(small) < len(large) / 2


def test_fit_never_enlarges() -> None:
    image = np.zeros((100, 50, 3), np.uint8)
    assert fit(image, 640) is image
    assert fit(image, 40).shape == (40, 20, 3)


def test_crop_rect_is_clipped_and_never_empty() -> None:
    assert crop_rect((0.0, 0.0, 1.0, 1.0), 640, 480, 0.5) == (0, 0, 640, 480)
    x0, y0, x1, y1 = crop_rect((0.5, 0.5, 0.5, 0.5), 640, 480, 0.2)  # zero-size box
    assert x1 > x0 and y1 > y0


@pytest.mark.parametrize(
    "kwargs", [{"quality": 0}, {"quality": 101}, {"max_size": 8}, {"margin": -0.1}]
)
def test_invalid_options_are_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        SnapshotOptions(**kwargs)  # type: ignore[arg-type]


def engine_events(canvas: Image, box: tuple[float, ...]) -> list[Event]:
    engine = EventEngine()
    events: list[Event] = []
    dets = Detections(
        np.array([box], np.float32),
        np.array([15], np.int32),
        np.array([0.8], np.float32),
        ("bird",),
    )
    for seq in range(3):
        f = Frame(canvas, seq, T0 + seq, 0.0, pixel_format="BGR")
        events += engine.update(Result(seq, f.timestamp, 0.0, "ssd", 960, 540, dets), f).events
    return events + list(engine.flush().events)


def test_event_snapshot_from_the_engine(scene: tuple[Image, tuple[float, ...]]) -> None:
    canvas, box = scene
    new, end = engine_events(canvas, box)
    for event in (new, end):
        image = decode(
            event_snapshot(event, SnapshotOptions(crop=True, margin=0.0, max_size=4000)) or b""
        )
        x0, y0, x1, y1 = crop_rect(box, 960, 540, 0.0)
        assert image.shape == (y1 - y0, x1 - x0, 3) == (192, 256, 3)
    assert snapshot_filename(end) == f"{round(T0 * 1000)}-bird-1.jpg"
