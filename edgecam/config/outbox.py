"""`[outbox]`: the on-disk queue that holds messages until the broker acknowledges them."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from edgecam.config.base import Section


class OutboxSection(Section):
    """`[outbox]`: the on-disk queue that holds messages until the broker acknowledges them."""

    path: Path | None = Field(
        None, description="default: $STATE_DIRECTORY or $XDG_STATE_HOME/edgecam"
    )
    max_messages: int = Field(100_000, ge=1, description="cap: the oldest are dropped past it")
    max_bytes: int = Field(64 * 1024 * 1024, ge=4096, description="cap on topic+payload bytes")
