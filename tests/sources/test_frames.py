"""Recorded stills: frames directories (natural order, corrupt files) and single images.

Frames are written from the real asset images; each is scaled to a different width so the
order they come back in can be read off their shapes.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from edgecam.errors import SourceError
from edgecam.sources import Source, open_source
from edgecam.sources.frames import FramesDirSource, ImageTooLarge, decode_image, natural_key
from tests.support.huge_images import (
    bmp_header_only,
    flat_jpeg,
    png_header_only,
    webp_vp8x_header_only,
)

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


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "not a JPEG, PNG, BMP or WebP image"),
        (b"GIF89a not really", "not a JPEG, PNG, BMP or WebP image"),
        (b"\xff\xd8\xff\xe0 truncated", "JPEG header without a valid size"),
        (png_header_only(64, 48), "cannot be decoded as an image"),  # header fine, no data
    ],
)
def test_undecodable_image_is_a_source_error_naming_the_file(
    tmp_path: Path, content: bytes, problem: str
) -> None:
    path = tmp_path / "snapshot.jpg"
    path.write_bytes(content)
    with pytest.raises(SourceError) as info:
        open_source(str(path))
    assert str(info.value).startswith(f"{path}: {problem}")


def test_closed_source_reads_nothing(owl: Path) -> None:
    source = open_source(str(owl), loop=True)
    source.close()
    source.close()  # idempotent
    assert source.read() is None


# ---- bounded memory: sizes come from the header, before decoding (issue 14, item 3) --------

HUGE = [
    # (format, file bytes): 30000 x 30000 = 900 MP, 2.7 GB once decoded to BGR
    ("jpg", flat_jpeg(30000, 30000)),  # a real, decodable 3.5 MB JPEG
    ("png", png_header_only(30000, 30000)),
    ("bmp", bmp_header_only(30000, -30000)),  # top-down BMPs have a negative height
    ("webp", webp_vp8x_header_only(16383, 16383)),  # WebP's largest canvas: 268 MP
]


@pytest.mark.parametrize(("suffix", "content"), HUGE, ids=[h[0] for h in HUGE])
def test_huge_images_are_refused_from_their_header(
    tmp_path: Path, suffix: str, content: bytes
) -> None:
    path = tmp_path / f"huge.{suffix}"
    path.write_bytes(content)
    with pytest.raises(ImageTooLarge) as info:
        open_source(str(path))
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "megapixels, over the limit of 50" in message
    assert info.value.exit_code == 2


def test_the_pixel_limit_is_the_callers(tmp_path: Path, owl: Path) -> None:
    with pytest.raises(ImageTooLarge, match=r"512x384 JPEG is 0\.2 megapixels"):
        decode_image(owl, max_pixels=512 * 384 - 1)
    assert decode_image(owl, max_pixels=512 * 384).shape == (384, 512, 3)
    small = tmp_path / "flat.jpg"
    small.write_bytes(flat_jpeg(640, 480))
    assert decode_image(small).shape == (480, 640, 3)  # the generator makes real JPEGs


@pytest.mark.parametrize(
    "content",
    [
        b"II*\x00" + bytes(64),  # TIFF: OpenCV decodes it, with no size check of ours
        b"P6\n30000 30000\n255\n",  # PPM
        b"GIF89a" + bytes(16),
    ],
    ids=["tiff", "ppm", "gif"],
)
def test_only_the_documented_formats_are_decoded_whatever_the_name(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "photo.png"
    path.write_bytes(content)
    with pytest.raises(SourceError, match="not a JPEG, PNG, BMP or WebP image"):
        decode_image(path)


@pytest.mark.timeout(20)
def test_a_fifo_named_like_an_image_is_refused_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "frame.jpg"
    os.mkfifo(fifo)
    with pytest.raises(SourceError, match="not a regular file"):
        open_source(str(fifo))


def test_frames_dir_skips_and_counts_oversized_frames(
    tmp_path: Path, owl: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Per file, like a corrupt frame: one stray huge photo does not end a long recording."""
    _write(tmp_path / "frame_1.jpg", _scaled(owl, 100))
    (tmp_path / "frame_2.jpg").write_bytes(flat_jpeg(30000, 30000))
    _write(tmp_path / "frame_3.jpg", _scaled(owl, 120))
    with caplog.at_level(logging.WARNING), open_source(str(tmp_path)) as source:
        assert isinstance(source, FramesDirSource)
        widths = [f.width for f in iter(source.read, None)]
        assert widths == [100, 120] and source.skipped == 1
    assert "frame_2.jpg: 30000x30000 JPEG is 900.0 megapixels" in caplog.text


def test_frames_dir_of_only_oversized_frames_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(png_header_only(20000, 20000))
    with pytest.raises(SourceError, match="none of its 1 image files could be decoded"):
        FramesDirSource(tmp_path).read()
