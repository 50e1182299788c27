"""Frame → input tensor (edgecam.core.preprocess).

Checks that the three resize policies put the picture where their Geometry says (a drawn
rectangle is found back at its source position), that I420 with stride padding decodes like
OpenCV's own conversion, that BGR and RGB sources give identical tensors, and that the
quantization follows the tensor's (scale, zero_point) for uint8, int8 and float32 inputs.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from edgecam.core.preprocess import (
    Geometry,
    InputSpec,
    Resize,
    crop_i420,
    input_lut,
    make_tensor,
    plan,
    prepare,
    resize_factors,
    to_rgb,
)
from edgecam.errors import ModelError
from edgecam.types import Frame, TensorInfo

U8 = np.dtype(np.uint8)
I8 = np.dtype(np.int8)
F32 = np.dtype(np.float32)


def spec(
    resize: Resize = "stretch",
    *,
    dtype: np.dtype[Any] = U8,
    scale: float = 1 / 128,
    zp: int = 128,
    size: tuple[int, int] = (300, 300),
    float_range: tuple[float, float] = (-1.0, 1.0),
) -> InputSpec:
    return InputSpec(size[0], size[1], dtype, scale, zp, resize, float_range)


def frame(pixels: npt.NDArray[Any], fmt: str = "RGB") -> Frame:
    return Frame(pixels, seq=0, timestamp=0.0, monotonic=0.0, pixel_format=fmt)  # type: ignore[arg-type]


def smooth_image(w: int, h: int, seed: int = 0) -> npt.NDArray[Any]:
    """A colourful image without pixel-level noise (so resampling differences stay small)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(2, h // 16), max(2, w // 16), 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


# --- geometry --------------------------------------------------------------------------


@pytest.mark.parametrize("resize", ["stretch", "crop", "letterbox"])
@pytest.mark.parametrize("src", [(1280, 720), (480, 640), (300, 300), (200, 120)])
def test_geometry_round_trip(resize: Resize, src: tuple[int, int]) -> None:
    _, g = plan(*src, spec(resize, size=(320, 240)))
    boxes = np.array([[0.1, 0.2, 0.6, 0.9], [0.3, 0.3, 0.4, 0.5]], np.float32)
    model = g.to_model(boxes)
    np.testing.assert_allclose(g.to_frame(model), boxes, atol=1e-6)


def test_crop_and_letterbox_numbers() -> None:
    p, g = plan(1280, 720, spec("crop", size=(224, 224)))
    assert p.roi == (280, 0, 720, 720)
    np.testing.assert_allclose(g.to_frame([[0, 0, 1, 1]]), [[280 / 1280, 0, 1000 / 1280, 1]])
    p, g = plan(1280, 720, spec("letterbox"))
    assert p.dst == (0, 65, 300, 169)  # 720 * 300/1280 = 168.75 rows, centred
    np.testing.assert_allclose(g.to_frame([[0, 65 / 300, 1, 234 / 300]]), [[0, 0, 1, 1]], 1e-6)
    p, g = plan(1280, 720, spec("stretch"))
    assert g == Geometry() and p.roi == (0, 0, 1280, 720)


def test_to_frame_clips() -> None:
    g = Geometry(scale_x=2.0, offset_x=-0.5)
    np.testing.assert_allclose(g.to_frame([[0.1, -0.2, 0.9, 1.3]]), [[0.0, 0.0, 1.0, 1.0]])


@pytest.mark.parametrize("resize", ["stretch", "crop", "letterbox"])
@pytest.mark.parametrize("src", [(640, 480), (360, 640), (160, 120)])
def test_drawn_rectangle_lands_where_the_geometry_says(
    resize: Resize, src: tuple[int, int]
) -> None:
    w, h = src
    pixels = np.zeros((h, w, 3), np.uint8)
    rect = (int(w * 0.40), int(h * 0.30), int(w * 0.70), int(h * 0.80))  # x0, y0, x1, y1
    pixels[rect[1] : rect[3], rect[0] : rect[2]] = 255
    s = spec(resize, size=(200, 150))
    tensor, g = make_tensor(frame(pixels), s)
    ys, xs = np.nonzero(tensor[0, :, :, 0] > 127)
    found = [[xs.min() / 200, ys.min() / 150, (xs.max() + 1) / 200, (ys.max() + 1) / 150]]
    # A crop may cut the rectangle: expect the part inside the visible region.
    visible = g.to_frame([[0, 0, 1, 1]])[0]
    drawn = np.array([rect[0] / w, rect[1] / h, rect[2] / w, rect[3] / h])
    expected = np.concatenate(
        [np.maximum(drawn[:2], visible[:2]), np.minimum(drawn[2:], visible[2:])]
    )
    np.testing.assert_allclose(g.to_frame(found)[0], expected, atol=3 / min(w, h) + 0.01)


def test_letterbox_bars_are_black_in_every_dtype() -> None:
    white = np.full((100, 400, 3), 255, np.uint8)
    for s, black in [
        (spec("letterbox"), 0),
        (spec("letterbox", dtype=F32, scale=0.0, zp=0), -1.0),
        (spec("letterbox", dtype=I8, scale=1 / 128, zp=0), -128),
    ]:
        tensor, _ = make_tensor(frame(white), s)
        assert tensor[0, 0, 0, 0] == black and tensor[0, -1, -1, 2] == black
        assert tensor[0, 150, 150, 1] == input_lut(s)[255]


def test_resize_factors_and_roi_trimming() -> None:
    assert resize_factors((1280, 720), (300, 300)) == (4, 2)
    assert resize_factors((640, 480), (300, 300)) == (2, 1)
    assert resize_factors((400, 300), (300, 300)) == (1, 1)
    assert resize_factors((160, 120), (300, 300)) == (1, 1)
    # 1283 is not a multiple of 4: the ROI loses 3 columns, and the geometry knows it.
    p, g = plan(1283, 721, spec())
    assert p.roi == (1, 0, 1280, 720)
    np.testing.assert_allclose(g.to_frame([[0, 0, 1, 1]]), [[1 / 1283, 0, 1281 / 1283, 720 / 721]])


def test_big_shrinks_are_antialiased() -> None:
    """Close to a full INTER_AREA resize, unlike plain bilinear on a fine pattern."""
    checker = (np.indices((720, 1280)).sum(axis=0) % 2 * 255).astype(np.uint8)
    rgb = np.repeat(checker[:, :, None], 3, axis=2)
    tensor, _ = make_tensor(frame(rgb), spec())
    area = cv2.resize(rgb, (300, 300), interpolation=cv2.INTER_AREA)
    bilinear = cv2.resize(rgb, (300, 300), interpolation=cv2.INTER_LINEAR)
    ours_err = np.abs(tensor[0].astype(int) - area).mean()
    assert ours_err < 5 < np.abs(bilinear.astype(int) - area).mean()


# --- colour ----------------------------------------------------------------------------


def _pad_i420(compact: npt.NDArray[Any], stride: int) -> npt.NDArray[Any]:
    """Lay out an I420 image the way picamera2 does with a row stride > width."""
    h = compact.shape[0] * 2 // 3
    w = compact.shape[1]
    flat = compact.reshape(-1)
    y = np.zeros((h, stride), np.uint8)
    y[:, :w] = compact[:h]
    planes = [y.reshape(-1)]
    for k in range(2):
        plane = flat[h * w + k * (h // 2) * (w // 2) :][: (h // 2) * (w // 2)]
        padded = np.full((h // 2, stride // 2), 77, np.uint8)
        padded[:, : w // 2] = plane.reshape(h // 2, w // 2)
        planes.append(padded.reshape(-1))
    out: npt.NDArray[Any] = np.concatenate(planes).reshape(h * 3 // 2, stride)
    return out


def test_i420_with_stride_padding_matches_opencv() -> None:
    rgb = smooth_image(200, 150)
    compact = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)
    padded = _pad_i420(compact, 256)
    assert padded.shape == (225, 256)
    np.testing.assert_array_equal(crop_i420(padded, 200), compact)
    np.testing.assert_array_equal(
        to_rgb(padded, "YUV420", 200), cv2.cvtColor(compact, cv2.COLOR_YUV2RGB_I420)
    )
    with pytest.raises(ValueError, match="even"):
        crop_i420(padded, 199)


@pytest.mark.parametrize("resize", ["stretch", "crop", "letterbox"])
def test_padded_yuv_frame_uses_only_the_real_width(resize: Resize) -> None:
    rgb = smooth_image(300, 300, seed=5)
    compact = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)
    padded = frame(_pad_i420(compact, 320), "YUV420")
    ours, g1 = make_tensor(padded, spec(resize), pixel_width=300)
    ref, g2 = make_tensor(frame(compact, "YUV420"), spec(resize))
    assert g1 == g2
    np.testing.assert_array_equal(ours, ref)
    # RGB rows with padding columns are cut the same way.
    wide = np.concatenate([rgb, np.zeros((300, 20, 3), np.uint8)], axis=1)
    cut, _ = make_tensor(frame(wide), spec(resize), pixel_width=300)
    full, _ = make_tensor(frame(rgb), spec(resize))
    np.testing.assert_array_equal(cut, full)


def test_yuv_frame_prepares_like_its_rgb_conversion() -> None:
    rgb = smooth_image(640, 480, seed=3)
    yuv = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)
    reference = cv2.cvtColor(yuv, cv2.COLOR_YUV2RGB_I420)
    # Lores stream at model size: conversion only, straight into the tensor.
    same, _ = make_tensor(frame(yuv, "YUV420"), spec(size=(640, 480)))
    np.testing.assert_array_equal(same[0], reference)
    for resize in ("stretch", "crop", "letterbox"):
        ours, g1 = make_tensor(frame(yuv, "YUV420"), spec(resize))
        ref, g2 = make_tensor(frame(reference), spec(resize))
        assert g1 == g2
        np.testing.assert_array_equal(ours, ref)


@pytest.mark.parametrize("resize", ["stretch", "crop", "letterbox"])
@pytest.mark.parametrize(
    "s",
    [
        spec(),
        spec(dtype=F32, scale=0.0, zp=0),
        spec(dtype=I8, scale=1 / 128, zp=0),
        spec(dtype=U8, scale=1 / 255, zp=0),  # not pixel-native: general formula
    ],
)
def test_bgr_and_rgb_sources_give_the_same_tensor(resize: Resize, s: InputSpec) -> None:
    rgb = smooth_image(500, 333)
    s = InputSpec(s.width, s.height, s.dtype, s.scale, s.zero_point, resize)
    from_rgb, _ = make_tensor(frame(rgb), s)
    from_bgr, _ = make_tensor(frame(np.ascontiguousarray(rgb[:, :, ::-1]), "BGR"), s)
    np.testing.assert_array_equal(from_rgb, from_bgr)


def test_to_rgb_formats() -> None:
    rgb = smooth_image(64, 48)
    assert to_rgb(rgb, "RGB") is rgb
    np.testing.assert_array_equal(to_rgb(np.ascontiguousarray(rgb[:, :, ::-1]), "BGR"), rgb)
    with pytest.raises(ValueError, match="unknown pixel format"):
        to_rgb(rgb, "HSV")  # type: ignore[arg-type]


# --- quantization ------------------------------------------------------------------------

PX = np.arange(256)


@pytest.mark.parametrize(
    ("s", "expected"),
    [
        # TF1 QAT MobileNets: real = (q - 128) / 128 ≈ px / 127.5 - 1 → raw pixels
        (spec(scale=1 / 128, zp=128), PX),
        # TF2 PTQ: (1/127.5, 127) → raw pixels
        (spec(scale=1 / 127.5, zp=127), PX),
        # int8 (1/128, 0) and (1/127.5, -1) → px - 128
        (spec(dtype=I8, scale=1 / 128, zp=0), PX - 128),
        (spec(dtype=I8, scale=1 / 127.5, zp=-1), PX - 128),
        # [0, 1]-range models quantized (1/255, 0) → raw pixels as well
        (spec(scale=1 / 255, zp=0, float_range=(0.0, 1.0)), PX),
        # a uint8 input whose quantization is not the normalisation: general formula
        (
            spec(scale=0.02, zp=10),
            np.clip(np.round((PX / 127.5 - 1) / 0.02 + 10), 0, 255),
        ),
        (
            spec(dtype=I8, scale=1 / 64, zp=5),
            np.clip(np.round((PX / 127.5 - 1) * 64 + 5), -128, 127),
        ),
        # float inputs: float_range mapping
        (spec(dtype=F32, scale=0.0, zp=0), PX / 127.5 - 1),
        (spec(dtype=F32, scale=0.0, zp=0, float_range=(0.0, 1.0)), PX / 255),
    ],
)
def test_input_lut(s: InputSpec, expected: npt.NDArray[Any]) -> None:
    lut = input_lut(s)
    assert lut.dtype == s.dtype
    np.testing.assert_allclose(lut.astype(np.float64), expected, atol=1e-6)


@pytest.mark.parametrize(
    "s",
    [spec(), spec(dtype=I8, scale=1 / 128, zp=0), spec(scale=0.02, zp=10), spec(dtype=F32)],
)
def test_prepared_tensor_is_the_lut_of_the_resized_pixels(s: InputSpec) -> None:
    rgb = smooth_image(300, 300)  # model size: no resampling, so the pixels are known exactly
    tensor, _ = make_tensor(frame(rgb), s)
    np.testing.assert_array_equal(tensor[0], input_lut(s)[rgb])


def test_prepare_writes_into_the_given_buffer() -> None:
    s = spec()
    out = np.zeros((1, 300, 300, 3), np.uint8)
    rgb = smooth_image(600, 600)
    prepare(frame(rgb), s, out=out)
    expected = cv2.resize(rgb, (300, 300), interpolation=cv2.INTER_AREA)  # exact 2x: box filter
    np.testing.assert_array_equal(out[0], expected)
    with pytest.raises(ValueError, match=r"out must be \(1, 300, 300, 3\) uint8"):
        prepare(frame(rgb), s, out=np.zeros((1, 224, 224, 3), np.uint8))


def test_input_spec_from_tensor() -> None:
    info = TensorInfo("input", 0, (1, 224, 160, 3), U8, 0.0078125, 128)
    s = InputSpec.from_tensor(info, "crop")
    assert (s.width, s.height, s.dtype, s.scale, s.zero_point) == (160, 224, U8, 0.0078125, 128)
    with pytest.raises(ModelError, match=r"shape \(1, 3, 224, 224\), expected"):
        InputSpec.from_tensor(TensorInfo("x", 0, (1, 3, 224, 224), U8, 0.1, 0), "crop")
    with pytest.raises(ModelError, match="float16"):
        InputSpec.from_tensor(TensorInfo("x", 0, (1, 8, 8, 3), np.dtype(np.float16), 0, 0), "crop")
