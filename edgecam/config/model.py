"""`[model]`: which model runs, on which TFLite runtime, and how results are filtered."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from edgecam.config.base import Section, split_list


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

    _split_lists = field_validator("labels", mode="before")(split_list)
