"""The Home Assistant names the validator calls, loaded in one place.

Several are private (``discovery._replace_all_abbreviations`` and friends): they can move in
any release, so every one is imported up front and a missing one is reported by name, with
the installed version, instead of failing somewhere in the middle of a run.
"""

from __future__ import annotations

import importlib
from typing import Any

#: (module, attribute) pairs. Private names: they may move when the pinned HA is bumped.
REQUIRED = (
    ("homeassistant.const", "__version__"),
    ("homeassistant.core", "HomeAssistant"),
    ("homeassistant.helpers.template", "Template"),
    ("homeassistant.helpers.config_validation", "url"),
    ("homeassistant.util.json", "json_loads_object"),
    ("homeassistant.util.dt", "parse_datetime"),
    ("homeassistant.components.mqtt.const", "SUPPORTED_COMPONENTS"),
    ("homeassistant.components.mqtt.discovery", "TOPIC_MATCHER"),
    ("homeassistant.components.mqtt.discovery", "_replace_all_abbreviations"),
    ("homeassistant.components.mqtt.discovery", "_replace_topic_base"),
    ("homeassistant.components.mqtt.discovery", "_valid_origin_info"),
    ("homeassistant.components.mqtt.discovery", "_merge_common_device_options"),
    ("homeassistant.components.mqtt.discovery", "MQTTDiscoveryPayload"),
    ("homeassistant.components.mqtt.schemas", "DEVICE_DISCOVERY_SCHEMA"),
    ("homeassistant.components.mqtt.models", "MqttValueTemplate"),
    ("homeassistant.components.mqtt.models", "PayloadSentinel"),
    ("homeassistant.components.mqtt.sensor", "DISCOVERY_SCHEMA"),
    ("homeassistant.components.mqtt.binary_sensor", "DISCOVERY_SCHEMA"),
    ("homeassistant.components.mqtt.image", "DISCOVERY_SCHEMA"),
    ("homeassistant.components.mqtt.event", "DISCOVERY_SCHEMA"),
    ("homeassistant.components.mqtt.switch", "DISCOVERY_SCHEMA"),
    ("homeassistant.components.mqtt.button", "DISCOVERY_SCHEMA"),
    ("homeassistant.components.mqtt.device_automation", "DISCOVERY_SCHEMA"),
    ("homeassistant.components.mqtt.device_trigger", "TRIGGER_DISCOVERY_SCHEMA"),
    ("homeassistant.components.sensor", "_numeric_state_expected"),
    ("homeassistant.components.sensor", "SensorDeviceClass"),
)

#: Keys that newer HA releases understand and older ones drop: notes, not problems.
NEWER_KEYS = {
    "default_entity_id": "2025.10",
    "def_ent_id": "2025.10 (abbreviation of default_entity_id)",
}
PAYLOAD_NONE = "None"  # mqtt.const.PAYLOAD_NONE
MAX_STATE_LENGTH = 255  # homeassistant.const.MAX_LENGTH_STATE_STATE


class InternalsMoved(RuntimeError):
    """The installed HA no longer has a name the validator uses."""


class HA:
    """The loaded names, looked up as ``ha["discovery._valid_origin_info"]``."""

    def __init__(self, names: dict[str, Any]) -> None:
        self._names = names

    def __getitem__(self, key: str) -> Any:
        return self._names[key]

    @property
    def version(self) -> str:
        return str(self._names["const.__version__"])

    @staticmethod
    def module(name: str) -> Any:
        return importlib.import_module(name)


def load() -> HA:
    """Import every name in REQUIRED; InternalsMoved lists each one that is missing."""
    found: dict[str, Any] = {}
    missing: list[str] = []
    for module_name, attr in REQUIRED:
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            missing.append(f"{module_name} (import failed: {err})")
            continue
        if not hasattr(module, attr):
            missing.append(f"{module_name}.{attr}")
            continue
        found[f"{module_name.rsplit('.', 1)[-1]}.{attr}"] = getattr(module, attr)
    if missing:
        version = found.get("const.__version__", "unknown")
        raise InternalsMoved(
            f"Home Assistant {version}: these names used by the validator moved or were "
            "renamed; update tests/support/hass/internals.py:\n  " + "\n  ".join(missing)
        )
    return HA(found)
