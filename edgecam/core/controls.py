"""Command topics (pure): what a subscriber may switch on a camera, and parsing what it sends.

Commands arrive on ``<prefix>/<device>/set/<name>`` from anyone the broker lets publish there
(Home Assistant's switches and button, a script, Node-RED), so every payload is untrusted: a
bad one becomes a :class:`CommandError` with one line saying what was wrong and what is
accepted, which the MQTT side logs before ignoring the message. Nothing here can raise
anything else, whatever the bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

CommandName = Literal["detect", "snapshots", "snapshot"]

#: name -> what it does; switches take ON/OFF, the button takes PRESS.
COMMANDS: dict[str, str] = {
    "detect": "switch: ON runs the detector, OFF skips inference (frames are still read)",
    "snapshots": "switch: ON publishes/saves a snapshot per event, OFF stops rendering them",
    "snapshot": "button: PRESS publishes a JPEG of the next frame to <device>/snapshot",
}
SWITCHES = ("detect", "snapshots")
ON, OFF, PRESS = "ON", "OFF", "PRESS"
_MAX_PAYLOAD = 64


class CommandError(ValueError):
    """A command that cannot be applied; str() is the one line to log."""


@dataclass(frozen=True, slots=True)
class Command:
    """A parsed command. on: the switch's new state (always True for the button)."""

    name: CommandName
    on: bool


def parse_command(name: str, payload: bytes) -> Command:
    """``name`` is the last topic level; ``payload`` the raw message bytes."""
    if name not in COMMANDS:
        known = ", ".join(sorted(COMMANDS))
        raise CommandError(f"unknown command {name[:40]!r} (known: {known})")
    if len(payload) > _MAX_PAYLOAD:
        raise CommandError(f"{name}: payload of {len(payload)} bytes is too long")
    try:
        text = payload.decode("utf-8").strip().upper()
    except UnicodeDecodeError:
        raise CommandError(f"{name}: payload is not UTF-8 text") from None
    if name == "snapshot":
        if text != PRESS:
            raise CommandError(f"snapshot: payload {text!r} is not {PRESS}")
        return Command("snapshot", True)
    if text not in (ON, OFF):
        raise CommandError(f"{name}: payload {text!r} is not {ON} or {OFF}")
    return Command("detect" if name == "detect" else "snapshots", text == ON)


def state_payload(on: bool) -> str:
    """What the retained ``state/<switch>`` topic carries."""
    return ON if on else OFF
