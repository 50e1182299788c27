"""`[outbox]`: the memory fallback and give-up settings are bounded, named in errors, and the
example config documents every key with its default."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib

from edgecam.config import load_config
from edgecam.config.outbox import OutboxSection
from edgecam.errors import ConfigError
from tests.support.paths import REPO


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("memory_max_messages = 0", "outbox.memory_max_messages"),  # below 10: useless
        ("memory_max_bytes = 100", "outbox.memory_max_bytes"),
        ("give_up_s = 1", "outbox.give_up_s"),  # shorter than a retry: flaps
        ("give_up_s = 'soon'", "outbox.give_up_s"),
    ],
)
def test_bad_values_are_named(tmp_path: Path, text: str, field: str) -> None:
    path = tmp_path / "edgecam.toml"
    path.write_text(f"[outbox]\n{text}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert field in str(info.value) and str(path) in str(info.value)


def test_example_config_lists_the_defaults() -> None:
    text = (REPO / "systemd" / "edgecam.toml").read_text()
    section = text[text.index("[outbox]") :].split("\n[", 1)[0]
    commented = "\n".join(
        line.lstrip("# ").split("  #")[0]
        for line in section.splitlines()
        if "=" in line and not line.startswith("# path")
    )
    documented = tomllib.loads(commented)
    defaults = OutboxSection().model_dump()
    assert documented == {k: v for k, v in defaults.items() if k != "path"}
