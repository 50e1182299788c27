"""`[service]`: running under a service manager (state dir, stop deadline, watchdog).

Pure: nothing here reads the environment; `edgecam.service.hooks.resolve_state_dir` turns an unset
`state_dir` into `$STATE_DIRECTORY` (set by systemd's StateDirectory=) or the XDG default.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

from edgecam.config.base import Section


class ServiceSection(Section):
    """How edgecam behaves under systemd: watchdog pings, stop deadline, persistent state."""

    watchdog: bool = Field(
        default=True,
        description="send WATCHDOG=1 while frames flow, when the unit sets WatchdogSec=",
    )
    stop_deadline_s: float = Field(
        default=20.0,
        gt=0,
        le=600,
        description="graceful stop budget (drain, flush, offline); keep below TimeoutStopSec=",
    )
    state_dir: Path | None = Field(
        default=None,
        description="outbox and caches; default $STATE_DIRECTORY, else $XDG_STATE_HOME/edgecam",
    )

    @field_validator("state_dir")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        """A relative path would depend on the working directory, which systemd sets to /."""
        if value is None:
            return None
        expanded = value.expanduser()
        if not expanded.is_absolute():
            raise PydanticCustomError(
                "edgecam_path",
                "{value} is not an absolute path (e.g. /var/lib/edgecam)",
                {"value": repr(str(value))},
            )
        return expanded
