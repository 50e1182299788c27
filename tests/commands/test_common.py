"""The device id: one rule for `--device-id` (output.device_id), mqtt.device_id and the wire
contract; ids the user gives are refused when they break it, the hostname default is adapted.

Before issue 14, `--device-id` silently rewrote `a/b`, `#`, control characters and long ids
(so `a/b` and `a-b` shared one topic and client id) while mqtt.device_id refused them.
"""

from __future__ import annotations

import socket

import pytest

from edgecam.commands import common
from edgecam.config import load_config
from edgecam.errors import ConfigError
from edgecam.schema import is_device_id

BAD_IDS = ["a/b", "#", "+", "cam 1", "cam\x1b[2J", "\u202ecam", "x" * 65, "", "kamera/ü"]


@pytest.mark.parametrize("value", BAD_IDS)
def test_both_device_id_fields_refuse_the_same_ids_with_the_same_words(value: str) -> None:
    messages = []
    for key in ("output.device_id", "mqtt.device_id"):
        with pytest.raises(ConfigError) as info:
            load_config(None, {key: value})
        text = str(info.value)
        assert text.startswith(f"command line: {key}: ")
        messages.append(text.removeprefix(f"command line: {key}: "))
    assert messages[0] == messages[1]
    assert "is not a device id: one MQTT topic level of 1-64 characters" in messages[0]


@pytest.mark.parametrize("value", ["cam1", "Front-Door_2.lan", "x" * 64, "007"])
def test_good_ids_are_kept_exactly(value: str) -> None:
    config = load_config(None, {"output.device_id": value, "mqtt.device_id": value})
    assert common.device_id(config.output.device_id) == value
    assert config.mqtt.device_id == value


@pytest.mark.parametrize(
    ("hostname", "expected"),
    [
        ("raspberrypi", "raspberrypi"),
        ("Cam-Garage.local", "cam-garage.local"),  # host names are case-insensitive
        ("weird host/name", "weird-host-name"),
        ("h" * 80, "h" * 64),
        ("---", "edgecam"),
    ],
)
def test_hostname_default_is_adapted_not_refused(
    monkeypatch: pytest.MonkeyPatch, hostname: str, expected: str
) -> None:
    """The host name is not user input: nobody typed a flag that could be corrected."""
    monkeypatch.setattr(socket, "gethostname", lambda: hostname)
    derived = common.device_id(None)
    assert derived == expected and is_device_id(derived)
