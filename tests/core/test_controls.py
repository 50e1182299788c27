"""Command payloads: what a switch or the button accepts, and one clear line for anything else.

Payloads come from anyone the broker lets publish on the command topics, so every byte string
must either parse or raise CommandError (never another exception).
"""

from __future__ import annotations

import contextlib

import pytest

from edgecam.core.controls import Command, CommandError, parse_command, state_payload


@pytest.mark.parametrize(
    ("name", "payload", "expected"),
    [
        ("detect", b"ON", Command("detect", True)),
        ("detect", b"OFF", Command("detect", False)),
        ("detect", b" off\n", Command("detect", False)),  # case and whitespace tolerated
        ("snapshots", b"on", Command("snapshots", True)),
        ("snapshot", b"PRESS", Command("snapshot", True)),
    ],
)
def test_accepted(name: str, payload: bytes, expected: Command) -> None:
    assert parse_command(name, payload) == expected


@pytest.mark.parametrize(
    ("name", "payload", "message"),
    [
        ("detect", b"maybe", "detect: payload 'MAYBE' is not ON or OFF"),
        ("detect", b"", "detect: payload '' is not ON or OFF"),
        ("snapshot", b"ON", "snapshot: payload 'ON' is not PRESS"),
        ("restart", b"PRESS", "unknown command 'restart' (known: detect, snapshot, snapshots)"),
        ("detect", b"\xff\xfe", "detect: payload is not UTF-8 text"),
        ("detect", b"O" * 65, "detect: payload of 65 bytes is too long"),
    ],
)
def test_rejected_with_one_line(name: str, payload: bytes, message: str) -> None:
    with pytest.raises(CommandError) as info:
        parse_command(name, payload)
    assert str(info.value) == message


def test_any_bytes_parse_or_raise_command_error() -> None:
    for i in range(256):
        for payload in (bytes([i]), bytes([i]) * 3, b"ON" + bytes([i])):
            with contextlib.suppress(CommandError):
                parse_command("detect", payload)


def test_state_payload() -> None:
    assert (state_payload(True), state_payload(False)) == ("ON", "OFF")
