"""`[logging]`: level and format (journald or plain) of the log on stderr."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from edgecam.config.base import Section

LogLevel = Literal["debug", "info", "warning", "error"]


LogFormat = Literal["auto", "journald", "plain"]


class LoggingSection(Section):
    """Log output on stderr; `--log-level` wins over `level`."""

    level: LogLevel = Field(default="info", description="debug, info, warning or error")
    format: LogFormat = Field(
        default="auto",
        description="journald: <N> priority prefixes, no timestamps; plain: timestamped; "
        "auto: journald when stderr is connected to the journal",
    )
