"""Recorded stills: frames directories (natural order, corrupt files) and single images.

Frames are written from the real asset images; each is scaled to a different width so the
order they come back in can be read off their shapes.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from edgecam.errors import SourceError
from edgecam.sources import Source, open_source
from edgecam.sources.frames import FramesDirSource, natural_key

Array = npt.NDArray[np.uint8]


def _scaled(image: Path, width: int) -> Array:
    pixels = cv2.imread(str(image))
    assert pixels is not None
    height = pixels.shape[0] * width // pixels.shape[1]
    return np.asarray(cv2.resize(pixels, (width, height), interpolation=cv2.INTER_AREA))


def _write(path: Path, pixels: Array) -> None:
    assert cv2.imwrite(str(path), pixels)


@pytest.fixture
def owl(asset_images: Path) -> Path:
    return asset_images / "owl.jpg"


def test_natural_key_orders_numbers_by_value() -> None:
    names = ["frame_10.jpg", "frame_2.jpg", "Frame_1.png", "frame_2b.jpg", "a.jpg", "frame_02.jpg"]
    ordered = sorted(names, key=natural_key)
    assert (
        ordered.index("Frame_1.png") < ordered.index("frame_2.jpg") < ordered.index("frame_10.jpg")
    )
    assert ordered[0] == "a.jpg"  # text parts compare alphabetically


def test_frames_dir_replays_in_natural_order(tmp_path: Path, owl: Path) -> None:
    # name -> width; natural order is 1, 2, 3, 10, 11 whatever the extension or case.
    frames = {"frame_10.png": 50, "frame_2.jpg": 20, "frame_1.png": 10, "FRAME_3.JPEG": 30}
    frames["frame_11.bmp"] = 60
    for name, width in frames.items():
        _write(tmp_path / name, _scaled(owl, width))
    (tmp_path / "notes.txt").write_text("not a frame")
    (tmp_path / "sub").mkdir()
    _write(tmp_path / "sub" / "frame_0.png", _scaled(owl, 99))  # not recursive

    source = open_source(str(tmp_path))
    assert isinstance(source, Source) and not source.live
    assert source.frame_count == 5
    got = []
    while (frame := source.read()) is not None:
        assert frame.pixel_format == "BGR" and frame.source == f"frames:{tmp_path}"
        got.append((frame.seq, frame.pixels.shape[1]))
    assert got == [(0, 10), (1, 20), (2, 30), (3, 50), (4, 60)]
    assert source.read() is None  # stays at the end
    source.close()


def test_frames_are_decoded_unchanged_as_bgr(tmp_path: Path, owl: Path) -> None:
    pixels = _scaled(owl, 64)
    _write(tmp_path / "0001.png", pixels)  # PNG: lossless, so equality is exact
    with open_source(str(tmp_path)) as source:
        frame = source.read()
    assert frame is not None
    np.testing.assert_array_equal(frame.pixels, pixels)


def test_corrupt_frame_is_skipped_counted_and_named(
    tmp_path: Path, owl: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _write(tmp_path / "frame_1.png", _scaled(owl, 10))
    (tmp_path / "frame_2.jpg").write_bytes(b"this is not a jpeg")
    (tmp_path / "frame_3.png").write_bytes(b"")
    _write(tmp_path / "frame_4.png", _scaled(owl, 40))
    source = FramesDirSource(tmp_path)
    with caplog.at_level(logging.WARNING, logger="edgecam.sources.frames"):
        frames = [source.read(), source.read(), source.read()]
    assert [f.pixels.shape[1] for f in frames if f is not None] == [10, 40]
    assert [f.seq for f in frames if f is not None] == [0, 1]  # seq counts delivered frames
    assert frames[2] is None
    assert source.skipped == 2
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "frame_2.jpg" in warned and "frame_3.png" in warned


def test_dir_without_any_decodable_frame_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"junk")
    (tmp_path / "b.png").write_bytes(b"junk")
    source = open_source(str(tmp_path), loop=True)  # loop must not spin forever
    with pytest.raises(SourceError, match="none of its 2 image files could be decoded"):
        source.read()


def test_empty_dir_names_dir_and_extensions(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("frames go here")
    with pytest.raises(SourceError) as info:
        open_source(str(tmp_path))
    text = str(info.value)
    assert str(tmp_path) in text
    for ext in ("*.jpg", "*.jpeg", "*.png", "*.bmp", "*.webp"):
        assert ext in text


def test_frames_dir_loop_restarts(tmp_path: Path, owl: Path) -> None:
    _write(tmp_path / "1.png", _scaled(owl, 10))
    _write(tmp_path / "2.png", _scaled(owl, 20))
    with open_source(str(tmp_path), loop=True) as source:
        frames = [source.read() for _ in range(5)]
    assert [f.pixels.shape[1] for f in frames if f] == [10, 20, 10, 20, 10]
    assert [f.seq for f in frames if f] == [0, 1, 2, 3, 4]


def test_image_source_is_one_frame(owl: Path) -> None:
    source = open_source(str(owl))
    assert source.name == f"image:{owl.resolve()}" and source.frame_count == 1
    frame = source.read()
    assert frame is not None and frame.seq == 0 and frame.pixel_format == "BGR"
    np.testing.assert_array_equal(frame.pixels, cv2.imread(str(owl)))
    assert frame.width == 512 and frame.height == 384
    assert source.read() is None
    source.close()


def test_image_source_loops_the_same_frame(owl: Path) -> None:
    with open_source(str(owl), loop=True) as source:
        frames = [source.read() for _ in range(3)]
    assert [f.seq for f in frames if f] == [0, 1, 2]
    assert frames[0] is not None and frames[2] is not None
    np.testing.assert_array_equal(frames[0].pixels, frames[2].pixels)
    assert frames[2].monotonic >= frames[0].monotonic
    # The frames share one array: writing into it would change every later frame.
    with pytest.raises(ValueError, match="read-only"):
        frames[0].pixels[0, 0, 0] = 1


@pytest.mark.parametrize("content", [b"", b"GIF89a not really", b"\xff\xd8\xff\xe0 truncated"])
def test_undecodable_image_is_a_source_error_naming_the_file(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "snapshot.jpg"
    path.write_bytes(content)
    with pytest.raises(SourceError) as info:
        open_source(str(path))
    assert str(path) in str(info.value) and "cannot be decoded as an image" in str(info.value)


def test_closed_source_reads_nothing(owl: Path) -> None:
    source = open_source(str(owl), loop=True)
    source.close()
    source.close()  # idempotent
    assert source.read() is None
