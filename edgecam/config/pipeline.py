"""`[pipeline]`: how frames flow (adaptive execution), queue sizes, stop deadline, progress
rate and the optional motion gate.

Flat keys (``motion_threshold`` rather than a nested table) so every field can be overridden
with one ``--set pipeline.KEY=VALUE``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from edgecam.config.base import Section


class PipelineSection(Section):
    """Defaults suit a Pi 4/5 running one model: small queues keep latency and memory bounded."""

    mode: Literal["auto", "sequential", "pipelined"] = Field(
        default="auto",
        description="auto: measure which arrangement is fastest on this machine, model and "
        "source (cached); sequential: every stage in one thread; pipelined: capture, "
        "inference and output threads",
    )
    recheck_s: float = Field(
        default=60.0,
        ge=0,
        le=86400,
        description="auto mode: how often to compare stage costs with the calibration and "
        "re-measure when they drifted (0: never re-check)",
    )

    frame_queue: int = Field(
        default=2, ge=1, le=256, description="replay sources: frames decoded ahead of inference"
    )
    result_queue: int = Field(
        default=4,
        ge=1,
        le=4096,
        description="results waiting for the sinks before inference blocks",
    )
    stop_timeout_s: float = Field(
        default=5.0, gt=0, le=300, description="deadline for the threads to finish after a stop"
    )
    progress_interval_s: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="minimum time between two progress callbacks (watchdog)",
    )
    motion: bool = Field(
        default=False, description="skip inference while the scene does not change"
    )
    motion_threshold: int = Field(
        default=25,
        ge=1,
        le=255,
        description="grey-level change (0-255) that counts a pixel as changed",
    )
    motion_min_area: float = Field(
        default=0.005,
        gt=0,
        le=1,
        description="fraction of pixels that must change to run inference",
    )
    motion_refresh_s: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="run inference at least this often on a static scene",
    )
    motion_width: int = Field(
        default=160,
        ge=16,
        le=1024,
        description="width (px) of the grey thumbnail the gate compares",
    )
