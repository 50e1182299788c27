"""Frame → model input tensor: crop/resize/letterbox, colour conversion, quantization.

Pure functions over numpy arrays (OpenCV for the pixel work); no I/O, no clock. The work is
ordered to touch as few pixels as possible: crop first, resize BGR before swapping channels
at model size, and write straight into the interpreter's input buffer.

Quantization follows the input tensor's own (scale, zero_point): real = f0 + px·(f1−f0)/255
for the model's float range (f0, f1), q = round(real/scale + zp). Inputs whose quantization
is just the model's folded normalisation (uint8 (1/128, 128) or (1/127.5, 127); int8 (1/128, 0))
get raw pixels (or px − 128), which their converters intended and which is within 1 LSB of
the formula.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np
import numpy.typing as npt

from edgecam.errors import ModelError
from edgecam.types import Frame, PixelFormat, TensorInfo

Resize = Literal["stretch", "crop", "letterbox"]
U8 = npt.NDArray[np.uint8]
SUPPORTED_DTYPES = (np.dtype(np.uint8), np.dtype(np.int8), np.dtype(np.float32))


@dataclass(frozen=True)
class InputSpec:
    """What the model wants: size, dtype, quantization, resize policy, float input range."""

    width: int
    height: int
    dtype: np.dtype[Any]
    scale: float
    zero_point: int
    resize: Resize
    float_range: tuple[float, float] = (-1.0, 1.0)

    @classmethod
    def from_tensor(
        cls, info: TensorInfo, resize: Resize, float_range: tuple[float, float] = (-1.0, 1.0)
    ) -> InputSpec:
        shape = info.shape
        if len(shape) != 4 or shape[0] != 1 or shape[3] != 3:
            raise ModelError(
                f"model input {info.name!r} has shape {shape}, expected (1, height, width, 3) RGB",
                hint="only single-image NHWC RGB models are supported",
            )
        if info.dtype not in SUPPORTED_DTYPES:
            raise ModelError(
                f"model input {info.name!r} is {info.dtype}, expected uint8, int8 or float32"
            )
        return cls(shape[2], shape[1], info.dtype, info.scale, info.zero_point, resize, float_range)


@dataclass(frozen=True)
class Geometry:
    """Affine map from normalized model-input coordinates to normalized source-frame ones.

    frame = model * scale + offset, per axis. Normalized coordinates do not depend on the
    pixel array's resolution, so boxes also fit a full-resolution frame of the same view.
    """

    scale_x: float = 1.0
    scale_y: float = 1.0
    offset_x: float = 0.0
    offset_y: float = 0.0

    def to_frame(self, xyxy: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """(N, 4) model-input ``[x0, y0, x1, y1]`` → source frame, clipped to [0, 1]."""
        box = np.asarray(xyxy, np.float32).reshape(-1, 4)
        mul = np.array([self.scale_x, self.scale_y] * 2, np.float32)
        add = np.array([self.offset_x, self.offset_y] * 2, np.float32)
        return np.clip(box * mul + add, 0.0, 1.0).astype(np.float32)

    def to_model(self, xyxy: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """Inverse of :meth:`to_frame` (without clipping)."""
        box = np.asarray(xyxy, np.float32).reshape(-1, 4)
        mul = np.array([self.scale_x, self.scale_y] * 2, np.float32)
        add = np.array([self.offset_x, self.offset_y] * 2, np.float32)
        return ((box - add) / mul).astype(np.float32)


@dataclass(frozen=True)
class _Plan:
    """Source region (x, y, w, h) in source pixels → destination rect in model pixels."""

    roi: tuple[int, int, int, int]
    dst: tuple[int, int, int, int]


def plan(src_w: int, src_h: int, spec: InputSpec) -> tuple[_Plan, Geometry]:
    """Where the source goes in the model input, and the inverse mapping for the boxes.

    crop: largest centred region with the model's aspect ratio (classifiers were trained on
    centred crops); letterbox: whole frame, aspect kept, centred with black bars; stretch:
    whole frame to whole input (SSD detectors were trained on stretched images).
    """
    mw, mh = spec.width, spec.height
    x0, y0, cw, ch = 0, 0, src_w, src_h
    px, py, nw, nh = 0, 0, mw, mh
    if spec.resize == "crop":
        if src_w * mh > src_h * mw:
            cw = max(1, round(src_h * mw / mh))
        else:
            ch = max(1, round(src_w * mh / mw))
        x0, y0 = (src_w - cw) // 2, (src_h - ch) // 2
    elif spec.resize == "letterbox":
        k = min(mw / src_w, mh / src_h)
        nw, nh = min(mw, max(1, round(src_w * k))), min(mh, max(1, round(src_h * k)))
        px, py = (mw - nw) // 2, (mh - nh) // 2
    # Trim the ROI to whole multiples of the box-filter factors (see resize_factors); at most
    # k-1 source pixels, and the geometry below describes the trimmed ROI exactly.
    kx, ky = resize_factors((cw, ch), (nw, nh))
    x0, y0 = x0 + (cw % kx) // 2, y0 + (ch % ky) // 2
    cw, ch = cw - cw % kx, ch - ch % ky
    geometry = Geometry(
        scale_x=mw * cw / (nw * src_w),
        scale_y=mh * ch / (nh * src_h),
        offset_x=(x0 - px * cw / nw) / src_w,
        offset_y=(y0 - py * ch / nh) / src_h,
    )
    return _Plan((x0, y0, cw, ch), (px, py, nw, nh)), geometry


def resize_factors(src: tuple[int, int], dst: tuple[int, int]) -> tuple[int, int]:
    """Power-of-two (x, y) box-filter factors applied before the final bilinear resize.

    Bilinear reads only the 2x2 pixels around each sample, so shrinking by 2x or more (a
    1280x720 frame to 300x300) skips pixels and aliases fine texture; a full INTER_AREA
    averages every covered pixel but costs 1.9 ms for 768x432 -> 300x300 and 7.5 ms from
    1080p on this machine (one thread). Halving is cheap: OpenCV's 2x2 INTER_AREA path and an
    exact one-axis half by INTER_LINEAR (which is then a 2-tap box average) take 0.2-0.4 ms
    on 768x432, so the frame is halved per axis while it stays at least twice the model size
    and bilinear does the remaining < 2x (768x432: 0.6 ms in all, 1080p: ~1.4 ms; within a
    grey level of the integer-factor area filter this replaced). Upscaling and mild
    shrinking use bilinear alone (factors 1).
    """
    return _power_of_two(src[0] // dst[0]), _power_of_two(src[1] // dst[1])


def _power_of_two(ratio: int) -> int:
    return 1 << (ratio.bit_length() - 1) if ratio > 1 else 1


def crop_i420(pixels: npt.NDArray[np.uint8], width: int) -> npt.NDArray[np.uint8]:
    """Drop stride padding from an I420 array (H*3//2, stride) → compact (H*3//2, width).

    The U and V planes are H/2 rows of stride/2 bytes each, packed two rows per array row,
    so the padding is cut plane by plane.
    """
    stride = pixels.shape[1]
    h = pixels.shape[0] * 2 // 3
    if width == stride:
        return pixels
    if width > stride or width % 2 or h % 2:
        raise ValueError(f"I420 crop: width {width} must be even and <= stride {stride}")
    flat = pixels.reshape(-1)
    y = pixels[:h, :width]
    chroma_len = (h // 2) * (stride // 2)
    u = flat[h * stride : h * stride + chroma_len].reshape(h // 2, stride // 2)[:, : width // 2]
    v = flat[h * stride + chroma_len : h * stride + 2 * chroma_len].reshape(h // 2, stride // 2)
    parts = (y.reshape(-1), u.reshape(-1), v[:, : width // 2].reshape(-1))
    compact: U8 = np.concatenate(parts).reshape(h * 3 // 2, width)
    return compact


def to_rgb(
    pixels: npt.NDArray[np.uint8], pixel_format: PixelFormat, width: int | None = None
) -> npt.NDArray[np.uint8]:
    """Any supported frame layout → (H, W, 3) RGB. ``width`` crops I420 stride padding."""
    if pixel_format == "RGB":
        return pixels
    if pixel_format == "BGR":
        return _u8(cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB))
    if pixel_format == "YUV420":
        compact = crop_i420(pixels, width) if width is not None else pixels
        return _u8(cv2.cvtColor(compact, cv2.COLOR_YUV2RGB_I420))
    raise ValueError(f"unknown pixel format {pixel_format!r}: expected RGB, BGR or YUV420")


def input_lut(spec: InputSpec) -> npt.NDArray[Any]:
    """256-entry table pixel value → input tensor value for this spec (see module doc).

    Cached per spec and read-only: every frame of a model uses the same table.
    """
    return _cached_lut(spec)


@functools.lru_cache(maxsize=32)
def _cached_lut(spec: InputSpec) -> npt.NDArray[Any]:
    lut = _compute_lut(spec)
    lut.setflags(write=False)
    return lut


def _compute_lut(spec: InputSpec) -> npt.NDArray[Any]:
    px = np.arange(256, dtype=np.float64)
    f0, f1 = spec.float_range
    real = f0 + px * (f1 - f0) / 255.0
    if spec.dtype.kind == "f":
        return real.astype(spec.dtype)
    info = np.iinfo(spec.dtype)
    if spec.scale == 0.0:  # integer input without quantization: raw pixels
        return np.clip(px, info.min, info.max).astype(spec.dtype)
    q = np.clip(np.round(real / spec.scale + spec.zero_point), info.min, info.max)
    native = px + info.min
    if spec.dtype.itemsize == 1 and np.abs(q - native).max() <= 1.0:
        q = native  # the quantization is the model's folded normalisation: feed raw pixels
    lut: npt.NDArray[Any] = q.astype(spec.dtype)
    return lut


def _is_identity(lut: npt.NDArray[Any]) -> bool:
    return lut.dtype == np.uint8 and bool(np.array_equal(lut, np.arange(256)))


def _u8(result: Any) -> U8:
    """OpenCV's stubs type every result as a generic MatLike; from uint8 inputs it is uint8."""
    return result  # type: ignore[no-any-return]


def _into(result: U8, dst: U8 | None) -> U8:
    """Make sure an OpenCV result landed in ``dst`` (cv2 may allocate instead of reusing it)."""
    if dst is None or result is dst:
        return result
    np.copyto(dst, result)
    return dst


def _halve(src: U8, x: bool, y: bool) -> U8:
    """Exact 2x box average along the chosen axes (both: INTER_AREA's 2x2 fast path; one:
    INTER_LINEAR at exactly half, which weighs the two covered pixels 1/2 each)."""
    w, h = src.shape[1], src.shape[0]
    size = (w // 2 if x else w, h // 2 if y else h)
    method = cv2.INTER_AREA if x and y else cv2.INTER_LINEAR
    return _u8(cv2.resize(src, size, interpolation=method))


def _resize(src: U8, size: tuple[int, int], dst: U8 | None = None) -> U8:
    """Box-filter by the power-of-two factors, then bilinear to ``size`` (resize_factors)."""
    kx, ky = resize_factors((src.shape[1], src.shape[0]), size)
    while kx > 1 or ky > 1:
        src = _halve(src, kx > 1, ky > 1)
        kx, ky = max(1, kx // 2), max(1, ky // 2)
    if (src.shape[1], src.shape[0]) == size:
        return _into(src, dst)
    return _into(_u8(cv2.resize(src, size, dst=dst, interpolation=cv2.INTER_LINEAR)), dst)


def _rgb_at_model_size(src: U8, fmt: PixelFormat, p: _Plan, dst: U8 | None) -> U8:
    """The ROI resized to the destination rect as RGB, written into ``dst`` when given.

    BGR is resized first and swapped at model size (fewer pixels, identical result). YUV420
    is converted at source size: I420 resized to model size would keep only half the model's
    chroma resolution (measured on cat_720p → 300x300: mean error 1.2 vs 0.5 levels against
    resizing the original RGB) and saved only ~0.3 ms.
    """
    x0, y0, cw, ch = p.roi
    size = (p.dst[2], p.dst[3])
    if fmt == "YUV420":
        if (src.shape[1], src.shape[0] * 2 // 3) == size == (cw, ch):  # lores at model size
            return _into(_u8(cv2.cvtColor(src, cv2.COLOR_YUV2RGB_I420, dst=dst)), dst)
        src, fmt = _u8(cv2.cvtColor(src, cv2.COLOR_YUV2RGB_I420)), "RGB"
    roi = src[y0 : y0 + ch, x0 : x0 + cw]
    if fmt == "RGB":
        return _resize(roi, size, dst)
    small = _resize(roi, size)
    return _into(_u8(cv2.cvtColor(small, cv2.COLOR_BGR2RGB, dst=dst)), dst)


def prepare(
    frame: Frame, spec: InputSpec, out: npt.NDArray[Any], pixel_width: int | None = None
) -> Geometry:
    """Write ``frame`` into ``out`` (the runner's input view, (1, H, W, 3) of spec.dtype).

    ``pixel_width``: real image width when the rows carry stride padding (picamera2 YUV420
    lores, ``Source.pixel_width``). Returns the mapping of model-input boxes back to the
    source frame.
    """
    if out.shape != (1, spec.height, spec.width, 3) or out.dtype != spec.dtype:
        raise ValueError(
            f"prepare: out must be (1, {spec.height}, {spec.width}, 3) {spec.dtype}, "
            f"got {out.shape} {out.dtype}"
        )
    pixels, fmt = frame.pixels, frame.pixel_format
    src_w, src_h = frame.pixel_size
    if pixel_width is not None and pixel_width < src_w:
        pixels = crop_i420(pixels, pixel_width) if fmt == "YUV420" else pixels[:, :pixel_width]
        src_w = pixel_width
    p, geometry = plan(src_w, src_h, spec)
    lut = input_lut(spec)
    px, py, nw, nh = p.dst
    region = out[0, py : py + nh, px : px + nw]
    if (nw, nh) != (spec.width, spec.height):
        out[...] = lut[0]  # letterbox bars: black
    if _is_identity(lut):
        _rgb_at_model_size(pixels, fmt, p, region)
    else:
        np.take(lut, _rgb_at_model_size(pixels, fmt, p, None), out=region, mode="clip")
    return geometry


def make_tensor(
    frame: Frame, spec: InputSpec, pixel_width: int | None = None
) -> tuple[npt.NDArray[Any], Geometry]:
    """Allocate a fresh (1, H, W, 3) tensor and :func:`prepare` into it (tests, tools)."""
    tensor = np.empty((1, spec.height, spec.width, 3), spec.dtype)
    return tensor, prepare(frame, spec, tensor, pixel_width)
