"""Result types reject malformed data when built, so a broken result cannot travel the pipeline."""

from __future__ import annotations

import numpy as np
import pytest

from edgecam.types import Classification, Detections, Frame


def _dets(n: int) -> Detections:
    xyxy = np.tile(np.array([[0.1, 0.2, 0.5, 0.6]], np.float32), (n, 1))
    return Detections(
        xyxy,
        np.arange(n, dtype=np.int32),
        np.linspace(0.9, 0.5, n).astype(np.float32),
        tuple(f"c{i}" for i in range(n)),
    )


def test_detections_mask_and_index_filtering() -> None:
    dets = _dets(4)
    kept = dets[dets.score > 0.7]
    assert kept.label == ("c0", "c1")
    assert kept.xyxy.shape == (2, 4)
    assert dets[np.array([3, 0])].label == ("c3", "c0")


def test_detections_pixels_are_clipped_to_the_frame() -> None:
    dets = Detections(
        np.array([[-0.05, 0.5, 1.2, 1.0]], np.float32),
        np.array([1], np.int32),
        np.array([0.8], np.float32),
        ("car",),
    )
    assert dets.pixels(200, 100).tolist() == [[0, 50, 200, 100]]


@pytest.mark.parametrize(
    ("xyxy", "ids", "scores", "labels"),
    [
        # boxes with 3 coordinates instead of 4
        (np.zeros((1, 3), np.float32), np.zeros(1, np.int32), np.zeros(1, np.float32), ("a",)),
        # one more score than labels
        (np.zeros((1, 4), np.float32), np.zeros(1, np.int32), np.zeros(2, np.float32), ("a",)),
    ],
)
def test_detections_reject_inconsistent_columns(xyxy, ids, scores, labels) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="Detections"):
        Detections(xyxy, ids, scores, labels)


def test_classification_rejects_inconsistent_columns() -> None:
    with pytest.raises(ValueError, match="Classification"):
        Classification(np.zeros(2, np.int32), np.zeros(1, np.float32), ("a", "b"))


def test_frame_sizes_for_rgb_and_yuv() -> None:
    rgb = Frame(np.zeros((48, 64, 3), np.uint8), 0, 0.0, 0.0)
    assert (rgb.width, rgb.height) == (64, 48)
    yuv = Frame(np.zeros((72, 64), np.uint8), 0, 0.0, 0.0, pixel_format="YUV420", size=(1280, 720))
    assert yuv.pixel_size == (64, 48)
    assert (yuv.width, yuv.height) == (1280, 720)


def test_frame_rejects_wrong_dtype_and_shape() -> None:
    with pytest.raises(ValueError, match="uint8"):
        Frame(np.zeros((4, 4, 3), np.float32), 0, 0.0, 0.0)
    with pytest.raises(ValueError, match="YUV420"):
        Frame(np.zeros((5, 4), np.uint8), 0, 0.0, 0.0, pixel_format="YUV420")
