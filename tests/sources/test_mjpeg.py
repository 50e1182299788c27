"""MJPEG files decoded at reduced size: only when the model needs fewer pixels, never different
boxes. The MJPEG inputs are made from the asset video with OpenCV's VideoWriter in tmp_path."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from edgecam.config.model import ModelSection
from edgecam.pipeline.engine import open_engine
from edgecam.sources.mjpeg import MjpegFileSource, reduction
from edgecam.sources.open import open_source
from edgecam.sources.opencv import VideoFileSource
from edgecam.types import Detections


def _mjpeg(source: Path, out: Path, size: tuple[int, int], frames: int) -> Path:
    capture = cv2.VideoCapture(str(source))
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter.fourcc(*"MJPG"), 10.0, size)
    for _ in range(frames):
        ok, frame = capture.read()
        assert ok
        writer.write(cv2.resize(frame, size, interpolation=cv2.INTER_CUBIC))
    writer.release()
    capture.release()
    return out


@pytest.mark.parametrize(
    ("size", "model", "factor"),
    [
        ((1920, 1080), (300, 300), 2),  # 960x540; 1/4 would be 270 rows < 300
        ((3840, 2160), (300, 300), 4),
        ((3840, 2160), (224, 224), 8),
        ((640, 480), (300, 300), 1),  # 320x240 would be smaller than the model: no reduction
    ],
)
def test_reduction_keeps_at_least_the_model_size(
    size: tuple[int, int], model: tuple[int, int], factor: int
) -> None:
    assert reduction(size, model) == factor


def test_mjpeg_is_decoded_small_with_the_full_size_kept(asset_video: Path, tmp_path: Path) -> None:
    path = _mjpeg(asset_video, tmp_path / "hd.avi", (1280, 720), 12)
    with open_source(str(path), model_input=(300, 300)) as source:
        assert isinstance(source, MjpegFileSource) and source.codec == "MJPG/2"
        frames = list(iter(source.read, None))
    assert len(frames) == 12 and [f.seq for f in frames] == list(range(12))
    assert all(f.pixel_size == (640, 360) and (f.width, f.height) == (1280, 720) for f in frames)
    # close to decoding in full and averaging 2x2 blocks
    full = cv2.VideoCapture(str(path))
    ok, reference = full.read()
    full.release()
    assert ok
    halved = cv2.resize(reference, (640, 360), interpolation=cv2.INTER_AREA)
    assert np.abs(frames[0].pixels.astype(int) - halved).mean() < 3.0
    # without a model size to aim for (or not MJPEG) the ordinary decoder is used
    with open_source(str(path)) as plain:
        assert isinstance(plain, VideoFileSource)
    with open_source(str(asset_video), model_input=(300, 300)) as h264:
        assert isinstance(h264, VideoFileSource)


def test_looping_reopens_and_keeps_counting(asset_video: Path, tmp_path: Path) -> None:
    path = _mjpeg(asset_video, tmp_path / "short.avi", (1280, 720), 3)
    with open_source(str(path), model_input=(300, 300), loop=True) as source:
        seqs = [frame.seq for frame in (source.read() for _ in range(7)) if frame is not None]
    assert seqs == list(range(7))


@pytest.mark.slow
def test_detections_match_full_decoding(
    asset_video: Path, asset_models: Path, tmp_path: Path
) -> None:
    """Same objects, same boxes (IoU >= 0.8) as decoding every pixel, in full-frame coordinates."""
    engine = open_engine(ModelSection(name="ssd_mobilenet_v1", models_dir=asset_models, threads=1))
    capture = cv2.VideoCapture(str(asset_video))
    capture.set(cv2.CAP_PROP_POS_FRAMES, 139)  # people in view
    writer = cv2.VideoWriter(
        str(tmp_path / "people.avi"), cv2.VideoWriter.fourcc(*"MJPG"), 10.0, (1920, 1080)
    )
    for _ in range(5):
        ok, frame = capture.read()
        assert ok
        writer.write(cv2.resize(frame, (1920, 1080), interpolation=cv2.INTER_CUBIC))
    writer.release()
    path = str(tmp_path / "people.avi")
    with open_source(path, model_input=(300, 300)) as small, open_source(path) as full:
        assert isinstance(small, MjpegFileSource)
        pairs = [(small.read(), full.read()) for _ in range(5)]
    found = 0
    for reduced, whole in pairs:
        assert reduced is not None and whole is not None
        a, b = engine.process(reduced), engine.process(whole)
        assert (a.width, a.height) == (b.width, b.height) == (1920, 1080)
        assert isinstance(a.output, Detections) and isinstance(b.output, Detections)
        assert sorted(a.output.label) == sorted(b.output.label)
        for box in b.output.xyxy:
            found += 1
            assert max(_iou(box, other) for other in a.output.xyxy) >= 0.8
    assert found >= 3  # the comparison is not between empty results


def _iou(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, float(x1 - x0)) * max(0.0, float(y1 - y0))
    union = float((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])) - inter
    return inter / union if union > 0 else 0.0
