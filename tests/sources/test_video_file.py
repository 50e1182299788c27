"""Video file replay: every frame, in order, seq = frame index; loop; unreadable files."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from edgecam.errors import SourceError
from edgecam.sources import Source, open_source

Array = npt.NDArray[np.uint8]


def _container_frame_count(video: Path) -> int:
    """The count the container declares, read independently of edgecam."""
    cap = cv2.VideoCapture(str(video))
    try:
        return int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        cap.release()


def _first_frames(video: Path, count: int) -> list[Array]:
    cap = cv2.VideoCapture(str(video))
    frames: list[Array] = []
    while len(frames) < count:
        ok, pixels = cap.read()
        assert ok
        frames.append(np.asarray(pixels, dtype=np.uint8))
    cap.release()
    return frames


@pytest.fixture
def short_clip(tmp_path: Path, asset_video: Path) -> tuple[Path, list[Array]]:
    """A 5-frame clip cut from the asset video, written losslessly enough to compare."""
    frames = _first_frames(asset_video, 5)
    path = tmp_path / "clip.avi"
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10.0, (width, height))
    for pixels in frames:
        writer.write(pixels)
    writer.release()
    return path, _first_frames(path, 5)  # as decoded back, so equality is exact


def test_video_delivers_every_frame_in_order(asset_video: Path) -> None:
    expected = _container_frame_count(asset_video)
    first = _first_frames(asset_video, 1)[0]
    source = open_source(str(asset_video))
    assert isinstance(source, Source)
    assert not source.live and source.fps == 10.0 and source.frame_count == expected
    assert source.name == f"video:{asset_video.resolve()}"
    count = 0
    last_monotonic = 0.0
    while (frame := source.read()) is not None:
        assert frame.seq == count
        assert frame.monotonic >= last_monotonic
        last_monotonic = frame.monotonic
        if count == 0:
            np.testing.assert_array_equal(frame.pixels, first)
            assert frame.pixel_format == "BGR" and frame.pixels.shape == (432, 768, 3)
        count += 1
    source.close()
    assert count == expected  # 1394 for the asset video


def test_video_loop_restarts_with_increasing_seq(short_clip: tuple[Path, list[Array]]) -> None:
    path, decoded = short_clip
    with open_source(str(path), loop=True) as source:
        frames = [source.read() for _ in range(12)]
    assert [f.seq for f in frames if f is not None] == list(range(12))
    for index, frame in enumerate(frames):
        assert frame is not None
        np.testing.assert_array_equal(frame.pixels, decoded[index % 5])


def test_video_without_loop_ends(short_clip: tuple[Path, list[Array]]) -> None:
    path, _ = short_clip
    with open_source(str(path)) as source:
        frames = [source.read() for _ in range(7)]
    assert [f is not None for f in frames] == [True] * 5 + [False] * 2


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("notes.txt", b"just some text, not a video\n"),  # not media at all
        ("empty.mp4", b""),  # zero bytes
        ("truncated.mp4", None),  # the first 2 KB of the real video: header, no frames
    ],
)
def test_unreadable_video_names_the_file(
    tmp_path: Path, asset_video: Path, name: str, content: bytes | None
) -> None:
    path = tmp_path / name
    path.write_bytes(asset_video.read_bytes()[:2048] if content is None else content)
    with pytest.raises(SourceError) as info:
        open_source(str(path))
    assert str(path) in str(info.value) and "not a readable video" in str(info.value)


def test_read_after_close_returns_none(asset_video: Path) -> None:
    source = open_source(str(asset_video))
    assert source.read() is not None
    source.close()
    source.close()
    assert source.read() is None
