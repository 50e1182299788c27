"""Result types shared by every stage: pure dataclasses over numpy arrays, validated when built."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

PixelFormat = Literal["RGB", "BGR", "YUV420"]
Task = Literal["classification", "detection"]


@dataclass(frozen=True, slots=True)
class Frame:
    """One captured image.

    pixels: (H, W, 3) uint8 for RGB/BGR; (H*3//2, W) uint8 I420 for YUV420 (picamera2 lores).
    timestamp: capture wall-clock time, epoch seconds (for payloads).
    monotonic: capture time on time.monotonic() (for latency; wall clock can jump).
    size: (width, height) of the scene the pixels represent; differs from the pixel array when
    a camera delivers a downscaled stream (picamera2 lores) but boxes must be reported for the
    full-resolution frame.
    """

    pixels: npt.NDArray[np.uint8]
    seq: int
    timestamp: float
    monotonic: float
    source: str = ""
    pixel_format: PixelFormat = "RGB"
    size: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.pixels.dtype != np.uint8:
            raise ValueError(f"Frame.pixels must be uint8, got {self.pixels.dtype}")
        if self.pixel_format == "YUV420":
            if self.pixels.ndim != 2 or self.pixels.shape[0] % 3:
                raise ValueError(f"YUV420 frame must be (H*3//2, W), got {self.pixels.shape}")
        elif self.pixels.ndim != 3 or self.pixels.shape[2] != 3:
            raise ValueError(
                f"{self.pixel_format} frame must be (H, W, 3), got {self.pixels.shape}"
            )

    @property
    def pixel_size(self) -> tuple[int, int]:
        """(width, height) of the pixel array itself."""
        if self.pixel_format == "YUV420":
            return int(self.pixels.shape[1]), int(self.pixels.shape[0] * 2 // 3)
        return int(self.pixels.shape[1]), int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return self.size[0] if self.size else self.pixel_size[0]

    @property
    def height(self) -> int:
        return self.size[1] if self.size else self.pixel_size[1]


@dataclass(frozen=True, slots=True)
class Detections:
    """Parallel columns, one row per detected object.

    xyxy: (N, 4) float32, normalized [0, 1] to the source frame, [xmin, ymin, xmax, ymax].
    class_id: (N,) int32 model class index (before the label offset is applied).
    score: (N,) float32 in [0, 1].
    label: N strings.
    """

    xyxy: npt.NDArray[np.float32]
    class_id: npt.NDArray[np.int32]
    score: npt.NDArray[np.float32]
    label: tuple[str, ...]

    def __post_init__(self) -> None:
        n = len(self.label)
        if self.xyxy.shape != (n, 4):
            raise ValueError(f"Detections.xyxy must be ({n}, 4), got {self.xyxy.shape}")
        if self.class_id.shape != (n,) or self.score.shape != (n,):
            raise ValueError(
                f"Detections columns must all have {n} rows, got class_id {self.class_id.shape}, "
                f"score {self.score.shape}"
            )

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.int32), np.zeros(0, np.float32), ())

    def __len__(self) -> int:
        return len(self.label)

    def __getitem__(self, mask: npt.NDArray[np.bool_] | npt.NDArray[np.intp]) -> Detections:
        idx = np.flatnonzero(mask) if mask.dtype == np.bool_ else np.asarray(mask)
        return Detections(
            self.xyxy[idx], self.class_id[idx], self.score[idx], tuple(self.label[i] for i in idx)
        )

    def pixels(self, width: int, height: int) -> npt.NDArray[np.int32]:
        """Boxes in source-frame pixels, (N, 4) int32, clipped to the frame."""
        scale = np.array([width, height, width, height], np.float32)
        boxes: npt.NDArray[np.int32] = np.clip(np.rint(self.xyxy * scale), 0, scale).astype(
            np.int32
        )
        return boxes


@dataclass(frozen=True, slots=True)
class Classification:
    """Top-k of a classifier, best first. class_id indexes the model output; score in [0, 1]."""

    class_id: npt.NDArray[np.int32]
    score: npt.NDArray[np.float32]
    label: tuple[str, ...]

    def __post_init__(self) -> None:
        n = len(self.label)
        if self.class_id.shape != (n,) or self.score.shape != (n,):
            raise ValueError(
                f"Classification columns must all have {n} rows, got class_id "
                f"{self.class_id.shape}, score {self.score.shape}"
            )

    def __len__(self) -> int:
        return len(self.label)


@dataclass(frozen=True, slots=True)
class Result:
    """What one frame produced. timings_ms keys: capture, preprocess, invoke, postprocess."""

    seq: int
    timestamp: float
    monotonic: float
    model: str
    width: int
    height: int
    output: Detections | Classification
    timings_ms: dict[str, float] = field(default_factory=dict)
    source: str = ""
    # The frame the result came from, for consumers that need pixels (event snapshots). Not
    # part of the payload; it lives only as long as the result travels the output queue.
    frame: Frame | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class TensorInfo:
    """One model input/output. scale 0.0 means not quantized (float or int tensor)."""

    name: str
    index: int
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    scale: float
    zero_point: int

    @property
    def quantized(self) -> bool:
        return self.scale != 0.0

    @classmethod
    def from_details(cls, d: dict[str, Any]) -> TensorInfo:
        scale, zero_point = d.get("quantization", (0.0, 0))
        return cls(
            name=str(d["name"]),
            index=int(d["index"]),
            shape=tuple(int(x) for x in d["shape"]),
            dtype=np.dtype(d["dtype"]),
            scale=float(scale),
            zero_point=int(zero_point),
        )
