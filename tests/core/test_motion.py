"""Motion gate: static scenes are skipped, change and the periodic refresh let frames through.

Frames are built from a real photo (chelsea.png) so the thumbnails carry real texture and
noise-free static content; "motion" is a real object pasted somewhere else in the picture.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from edgecam.core.motion import MotionGate, grey_thumbnail
from edgecam.types import Frame


@pytest.fixture(scope="module")
def scene(asset_images: Path) -> npt.NDArray[np.uint8]:
    pixels = cv2.imread(str(asset_images / "chelsea.png"), cv2.IMREAD_COLOR)
    assert pixels is not None
    return np.asarray(pixels, np.uint8)


def _frame(pixels: npt.NDArray[np.uint8], seq: int = 0, fmt: str = "BGR") -> Frame:
    return Frame(pixels=pixels, seq=seq, timestamp=0.0, monotonic=0.0, pixel_format=fmt)  # type: ignore[arg-type]


def _gate(**kw: float) -> MotionGate:
    args: dict[str, float] = {"threshold": 25, "min_area": 0.01, "refresh_s": 10.0}
    args.update(kw)
    return MotionGate(
        threshold=int(args["threshold"]),
        min_area=args["min_area"],
        refresh_s=args["refresh_s"],
        width=160,
    )


def test_first_frame_runs_then_identical_frames_are_static(scene: npt.NDArray[np.uint8]) -> None:
    gate = _gate()
    assert gate.check(_frame(scene), 0.0).reason == "first"
    decisions = [gate.check(_frame(scene.copy(), i), 0.1 * i) for i in range(1, 20)]
    assert all(not d.run and d.reason == "static" and d.changed == 0.0 for d in decisions)


def test_sensor_noise_below_threshold_is_static(scene: npt.NDArray[np.uint8]) -> None:
    rng = np.random.default_rng(0)
    gate = _gate()
    gate.check(_frame(scene), 0.0)
    noise = rng.integers(-6, 7, scene.shape)
    noisy = np.clip(scene.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    assert not gate.check(_frame(noisy), 0.5).run


def test_moving_object_runs_and_becomes_the_new_reference(scene: npt.NDArray[np.uint8]) -> None:
    gate = _gate()
    gate.check(_frame(scene), 0.0)
    moved = scene.copy()
    h, w = scene.shape[:2]
    moved[: h // 3, : w // 3] = scene[h // 3 : 2 * (h // 3), w // 3 : 2 * (w // 3)]
    decision = gate.check(_frame(moved), 0.2)
    assert decision.run and decision.reason == "motion" and decision.changed > 0.01
    # The moved scene is now the reference: seeing it again is static.
    assert not gate.check(_frame(moved.copy()), 0.3).run


def test_slow_change_accumulates_against_last_accepted_frame(scene: npt.NDArray[np.uint8]) -> None:
    # Brightening 8 grey levels per frame never crosses 25 between neighbours, but does
    # against the reference after a few frames.
    gate = _gate(min_area=0.5)
    gate.check(_frame(scene), 0.0)
    runs = []
    for step in range(1, 6):
        brighter = np.clip(scene.astype(np.int16) + 8 * step, 0, 255).astype(np.uint8)
        runs.append(gate.check(_frame(brighter), 0.1 * step).run)
    assert runs[:2] == [False, False]
    assert any(runs[2:])


def test_forced_refresh_on_static_scene(scene: npt.NDArray[np.uint8]) -> None:
    gate = _gate(refresh_s=2.0)
    times = [0.0, 0.5, 1.0, 1.9, 2.0, 2.5, 3.9, 4.0]
    reasons = [gate.check(_frame(scene), t).reason for t in times]
    assert reasons == [
        "first",
        "static",
        "static",
        "static",
        "refresh",
        "static",
        "static",
        "refresh",
    ]


def test_thumbnail_sizes_and_yuv_luma(scene: npt.NDArray[np.uint8]) -> None:
    thumb = grey_thumbnail(_frame(scene), 160)
    assert thumb.dtype == np.int16 and 150 <= thumb.shape[1] <= 460
    yuv = np.asarray(cv2.cvtColor(scene[:300, :450], cv2.COLOR_BGR2YUV_I420), np.uint8)
    yuv_thumb = grey_thumbnail(_frame(yuv, fmt="YUV420"), 150)
    bgr_thumb = grey_thumbnail(_frame(np.ascontiguousarray(scene[:300, :450])), 150)
    assert yuv_thumb.shape == bgr_thumb.shape == (100, 150)
    # Same picture from either layout (OpenCV's I420 luma is studio range, 16..235, so
    # compare shape of the signal, not levels).
    assert np.corrcoef(yuv_thumb.ravel(), bgr_thumb.ravel())[0, 1] > 0.99


def test_rgb_and_bgr_give_the_same_luma(scene: npt.NDArray[np.uint8]) -> None:
    rgb = np.ascontiguousarray(scene[..., ::-1])
    assert np.array_equal(
        grey_thumbnail(_frame(rgb, fmt="RGB"), 100), grey_thumbnail(_frame(scene, fmt="BGR"), 100)
    )


def test_resolution_change_restarts_reference(scene: npt.NDArray[np.uint8]) -> None:
    gate = _gate()
    gate.check(_frame(scene), 0.0)
    cropped = np.ascontiguousarray(scene[:200, :300])  # e.g. a camera reconfigured
    assert gate.check(_frame(cropped), 0.1).reason == "first"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"threshold": 0},  # every pixel would count as changed
        {"min_area": 0.0},
        {"min_area": 1.5},
        {"refresh_s": 0.0},
    ],
)
def test_rejects_bad_parameters(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="motion"):
        _gate(**kwargs)
