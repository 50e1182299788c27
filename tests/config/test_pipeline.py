"""`[pipeline]` section: safe defaults (motion off), bounds on every field, typos rejected."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from edgecam.config.pipeline import PipelineSection


def test_defaults_keep_motion_off_and_queues_small() -> None:
    section = PipelineSection()
    assert section.motion is False
    assert 1 <= section.frame_queue <= 8
    assert section.result_queue >= 1
    assert section.stop_timeout_s > 0
    assert 0 < section.motion_min_area <= 1


def test_values_are_accepted_and_coerced_from_toml_types() -> None:
    section = PipelineSection.model_validate(
        {"motion": True, "motion_threshold": 40, "motion_refresh_s": 2, "frame_queue": 8}
    )
    assert (section.motion, section.motion_threshold, section.frame_queue) == (True, 40, 8)
    assert section.motion_refresh_s == 2.0


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"frame_queue": 0}, "frame_queue"),  # a zero-size queue would deadlock capture
        ({"result_queue": -1}, "result_queue"),
        ({"stop_timeout_s": 0}, "stop_timeout_s"),
        ({"motion_threshold": 256}, "motion_threshold"),  # grey levels are 0..255
        ({"motion_threshold": 0}, "motion_threshold"),  # 0 would call every frame moving
        ({"motion_min_area": 1.5}, "motion_min_area"),  # a fraction of the picture
        ({"motion_refresh_s": 0}, "motion_refresh_s"),
        ({"progress_interval_s": -1}, "progress_interval_s"),
        ({"motion_gate": True}, "motion_gate"),  # typo of `motion`: unknown keys are errors
    ],
)
def test_out_of_range_or_unknown_fields_name_the_field(values: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        PipelineSection.model_validate(values)
    locations = [err["loc"] for err in info.value.errors()]
    assert (field,) in locations


def test_section_is_immutable() -> None:
    section = PipelineSection()
    with pytest.raises(ValidationError):
        section.motion = True  # type: ignore[misc]
