"""Config sections for the main job: which model, which source, where results go."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from edgecam.config.base import Section


class ModelSection(Section):
    """`[model]`: what runs and how results are filtered."""

    name: str = Field("ssd_mobilenet_v1", description="manifest name or path to a .tflite file")
    models_dir: Path | None = Field(
        None, description="extra directory searched first for model files"
    )
    labels_file: Path | None = Field(None, description="label file overriding the manifest's")
    runtime: Literal["auto", "litert", "tflite"] = "auto"
    threads: int | None = Field(
        None, ge=1, le=64, description="interpreter threads (default: cores)"
    )
    threshold: float | None = Field(
        None, ge=0.0, le=1.0, description="minimum score (default: the model's manifest threshold)"
    )
    labels: tuple[str, ...] = Field((), description="only report these labels (empty: all)")
    top_k: int | None = Field(None, ge=1, le=100, description="classifier results per frame")
    resize: Literal["stretch", "crop", "letterbox"] | None = Field(
        None, description="resize policy (default: the model's manifest policy)"
    )

    @field_validator("labels", mode="before")
    @classmethod
    def _split_labels(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value


class SourceSection(Section):
    """`[source]`: where frames come from (see edgecam.sources.open_source for the spec grammar)."""

    spec: str | None = Field(
        None, description="file, frames dir, image, camera index, URL, picamera2"
    )
    width: int | None = Field(None, ge=16, le=8192)
    height: int | None = Field(None, ge=16, le=8192)
    fps: float | None = Field(None, gt=0, le=240)
    loop: bool = False
    reconnect_initial_s: float = Field(0.5, gt=0, le=60)
    reconnect_max_s: float = Field(30.0, gt=0, le=3600)
    read_timeout_s: float | None = Field(
        None,
        gt=0,
        le=600,
        description="live source: a read with no frame for this long counts as a dropped "
        "camera and starts a reconnect (default: 5 s for V4L2/RTSP/HTTP, 2 s for picamera2)",
    )
    give_up_s: float = Field(
        300.0, gt=0, description="live source: exit non-zero after this long without frames"
    )


class OutputSection(Section):
    """`[output]`: the JSON-lines sink (stdout by default) and run length."""

    jsonl: str | None = Field("-", description="'-' for stdout, a file path, or empty to disable")
    every_frame: bool = Field(True, description="JSON lines for frames without detections too")
    max_frames: int | None = Field(None, ge=1)
    device_id: str | None = Field(None, description="default: the hostname, sanitised for MQTT")
