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
    memory_max_messages: int = Field(
        1000,
        ge=10,
        le=1_000_000,
        description="while the outbox cannot store (disk full): messages waiting in RAM for the"
        " broker; the oldest are lost past it (counted, logged)",
    )
    memory_max_bytes: int = Field(
        8 * 1024 * 1024, ge=65536, le=1 << 30, description="the same cap in topic+payload bytes"
    )
    give_up_s: float = Field(
        300.0,
        ge=10,
        le=7 * 86400,
        description="an outbox failing for another reason than a full disk (I/O error, damaged"
        " file) this long stops edgecam with exit status 1 (systemd restarts it)",
    )
