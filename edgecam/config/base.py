"""Base class for config sections (strict: unknown keys are errors; immutable) and the
value rules several sections share."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic_core import PydanticCustomError

from edgecam.schema import DEVICE_ID_RULE, is_device_id
from edgecam.secrets import ENV_NAME


class Section(BaseModel):
    """Every config table derives from this so a typo is an error, not a silently ignored key."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


def split_list(value: object) -> object:
    """Accept "a, b" (a command-line override) as well as a TOML list, for list fields."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


def check_device_id(value: str | None) -> str | None:
    """mqtt.device_id and output.device_id (`--device-id`) follow the one device-id rule of
    the wire contract; a bad one is refused, never rewritten (rewriting made `a/b` and `a-b`
    the same device on one topic and client id)."""
    if value is not None and not is_device_id(value):
        raise PydanticCustomError(
            "edgecam_device_id",
            "{value} is not a device id: one MQTT topic level of {rule}",
            {"value": repr(value), "rule": DEVICE_ID_RULE},
        )
    return value


def check_env_name(value: str | None) -> str | None:
    """`*_env` settings name an environment variable: refuse what cannot be one."""
    if value is not None and not ENV_NAME.match(value):
        raise ValueError(f"{value!r} is not an environment variable name")
    return value
