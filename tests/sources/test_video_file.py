"""Video file replay: every frame, in order, seq = frame index; loop; unreadable files."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from edgecam.errors import SourceError
from edgecam.sources import Source, open_source
from tests.support.huge_images import flat_jpeg

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


def test_unreadable_video_leaves_no_ffmpeg_noise_on_stderr(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """FFmpeg and OpenCV print '[mov,mp4 @ 0x..] moov atom not found' and a VIDEOIO warning
    straight to fd 2; they go to the debug log, and edgecam's own one-line error stands alone."""
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"just some text, not a video\n")
    with (
        caplog.at_level(logging.DEBUG, logger="edgecam.sources.opencv"),
        pytest.raises(SourceError),
    ):
        open_source(str(path))
    # Nothing raw on fd 2 (a log handler another test left at debug level may print the
    # records themselves, each prefixed by its logger).
    raw = [x for x in capfd.readouterr().err.splitlines() if "edgecam.sources.opencv" not in x]
    assert raw == []
    assert "ffmpeg: " in caplog.text  # kept for whoever debugs, not lost


def test_huge_video_frames_are_refused_before_any_is_decoded(tmp_path: Path) -> None:
    """Two 16000 x 16000 MJPEG frames (2 MB on disk, 768 MB each as BGR): the container's
    declared size is checked right after opening, before the first read."""
    path = tmp_path / "crafted.mjpeg"
    path.write_bytes(flat_jpeg(16000, 16000) * 2)
    with pytest.raises(SourceError) as info:
        open_source(str(path))
    assert str(info.value).startswith(
        f"{path}: 16000x16000 video frames are 256.0 megapixels, over the limit of 50"
    )


def test_video_frame_limit_applies_to_every_frame(asset_video: Path) -> None:
    with pytest.raises(SourceError, match=r"768x432 video frames are 0\.3 megapixels"):
        open_source(str(asset_video), max_pixels=768 * 432 - 1)
    with open_source(str(asset_video), max_pixels=768 * 432) as source:
        assert source.read() is not None
