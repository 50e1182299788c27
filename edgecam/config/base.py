"""Base class for config sections: strict (unknown keys are errors), immutable."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """Every config table derives from this so a typo is an error, not a silently ignored key."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)
