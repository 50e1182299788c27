"""Base class for config sections (strict: unknown keys are errors; immutable) and the
value rules several sections share."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """Every config table derives from this so a typo is an error, not a silently ignored key."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


def split_list(value: object) -> object:
    """Accept "a, b" (a command-line override) as well as a TOML list, for list fields."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value
