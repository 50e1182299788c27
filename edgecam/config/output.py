"""`[output]`: JSON lines, device id, how many frames."""

from __future__ import annotations

from pydantic import Field, field_validator

from edgecam.config.base import Section, check_device_id


class OutputSection(Section):
    """`[output]`: the JSON-lines sink (stdout by default) and run length."""

    jsonl: str | None = Field("-", description="'-' for stdout, a file path, or empty to disable")
    every_frame: bool = Field(True, description="JSON lines for frames without detections too")
    max_frames: int | None = Field(None, ge=1)
    device_id: str | None = Field(None, description="default: the hostname, sanitised for MQTT")

    _device = field_validator("device_id")(check_device_id)
