"""Discovery messages through Home Assistant's own processing, in HA's order.

Per message on ``<prefix>/<component>/[<node_id>/]<object_id>/config`` (and device-based
``<prefix>/device/...``): JSON object, ``_replace_all_abbreviations``, ``_valid_origin_info``
(single component) or ``DEVICE_DISCOVERY_SCHEMA`` plus the shared-option merge (device-based),
``_replace_topic_base``, then the platform's ``DISCOVERY_SCHEMA`` (device triggers also
``TRIGGER_DISCOVERY_SCHEMA``). Whatever HA logs at WARNING or above meanwhile is a problem.
HA silently drops unknown top-level keys (REMOVE_EXTRA); they are reported. An empty payload
removes the config, as in HA.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from typing import Any

from tests.support.hass.internals import HA, NEWER_KEYS, InternalsMoved

DISCOVERY_LEVEL_KEYS = {"origin"}  # handled by discovery itself, outside the platform schema


class Capture(logging.Handler):
    """Collects the WARNING+ records HA logs while one item is processed."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def take(self) -> list[str]:
        out = [f"{r.levelname} [{r.name}] {r.getMessage()}" for r in self.records]
        self.records.clear()
        return out


@dataclass
class Config:
    """One discovered item after HA's processing and schema validation."""

    component: str
    discovery_id: str
    discovery_topic: str
    raw: dict[str, Any]  # as HA hands it to the platform (abbreviations expanded)
    config: dict[str, Any]  # validated by the platform schema

    @property
    def label(self) -> str:
        uid = self.config.get("unique_id")
        return f"{self.component}:{uid}" if uid else f"{self.component}:{self.discovery_id}"


@dataclass
class Report:
    ha_version: str
    problems: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def problem(self, kind: str, topic: str, message: str, entity: str | None = None) -> None:
        self.problems.append({"kind": kind, "topic": topic, "entity": entity, "message": message})


class Discovery:
    """The configs active so far; feed it discovery messages in the order received."""

    def __init__(self, ha: HA, prefix: str, report: Report, capture: Capture) -> None:
        self.ha = ha
        self.prefix = prefix
        self.report = report
        self.capture = capture
        self.configs: dict[tuple[str, str], Config] = {}
        self.checked = 0

    def handle(self, topic: str, payload: str) -> None:
        match = self.ha["discovery.TOPIC_MATCHER"].match(topic.replace(f"{self.prefix}/", "", 1))
        if not match:
            self.report.problem("topic", topic, "illegal discovery topic: HA ignores it")
            return
        component, node_id, object_id = match.groups()
        if component == "device":
            self._device(topic, payload, node_id, object_id)
            return
        if component not in self.ha["const.SUPPORTED_COMPONENTS"]:
            self.report.problem("topic", topic, f"component '{component}' is not supported")
            return
        self.checked += 1
        discovery_id = f"{node_id} {object_id}" if node_id else object_id
        if payload == "":
            self._remove(component, discovery_id, topic)
            return
        data = self._parse(topic, payload)
        if data is None:
            return
        if "migrate_discovery" in data or "migr_discvry" in data:
            self.report.notes.append(f"{topic}: migrate_discovery request")
            return
        self.ha["discovery._replace_all_abbreviations"](data)
        if not self.ha["discovery._valid_origin_info"](data):
            self._flush_logs(topic, None, kind="origin")
            return
        self._component(component, discovery_id, topic, data)

    def _parse(self, topic: str, payload: str) -> Any:
        try:
            loaded = self.ha["json.json_loads_object"](payload)
        except ValueError as err:
            self.report.problem("json", topic, f"payload is not a JSON object: {err}")
            return None
        return self.ha["discovery.MQTTDiscoveryPayload"](loaded)

    def _device(self, topic: str, payload: str, node_id: str | None, object_id: str) -> None:
        if payload == "":  # removes every component of the device
            for key in [k for k in self.configs if k[1].startswith(f"{object_id} ")]:
                self._remove(key[0], key[1], topic)
            return
        device = self._parse(topic, payload)
        if device is None:
            self.checked += 1
            return
        self.ha["discovery._replace_all_abbreviations"](device)
        try:
            self.ha["schemas.DEVICE_DISCOVERY_SCHEMA"](device)
        except Exception as err:  # vol.Invalid
            self.checked += 1
            self.report.problem("schema", topic, f"invalid device discovery payload: {err}")
            return
        self.checked += len(device["components"])
        for component_id, given in device["components"].items():
            comp = dict(given)
            component = comp.pop("platform")
            inner = f"{node_id} {component_id}" if node_id else component_id
            discovery_id = f"{object_id} {inner}"
            data = self.ha["discovery.MQTTDiscoveryPayload"](comp)
            if not data:  # {"p": "sensor"} alone removes that component
                self._remove(component, discovery_id, topic)
                continue
            data["device"] = device["device"]
            data["origin"] = device.get("origin")
            self.ha["discovery._merge_common_device_options"](data, device)
            data.device_discovery = True
            self._component(component, discovery_id, f"{topic}#{component_id}", data)

    def _remove(self, component: str, discovery_id: str, topic: str) -> None:
        if self.configs.pop((component, discovery_id), None) is None:
            self.report.notes.append(f"{topic}: empty payload, nothing discovered to remove")
        else:
            self.report.notes.append(f"{topic}: config removed (empty payload)")

    def _component(self, component: str, discovery_id: str, topic: str, data: Any) -> None:
        if "~" in data:
            self.ha["discovery._replace_topic_base"](data)
        raw = copy.deepcopy(dict(data))
        entity = f"{component}:{raw['unique_id']}" if raw.get("unique_id") else None
        config = self._validated(component, topic, data, entity)
        if config is None:
            return
        self._check_keys(component, topic, raw, config, entity)
        item = Config(component, discovery_id, topic, raw, dict(config))
        uid = item.config.get("unique_id")
        for other in self.configs.values():
            same = other.component == component and other.config.get("unique_id") == uid
            if uid and same and other.discovery_id != discovery_id:
                self.report.problem(
                    "duplicate",
                    topic,
                    f"unique_id '{uid}' already used by {other.discovery_topic}: "
                    "HA ignores the second entity",
                    entity,
                )
        self.configs[(component, discovery_id)] = item

    def _validated(
        self, component: str, topic: str, data: Any, entity: str | None
    ) -> dict[str, Any] | None:
        module_name = f"homeassistant.components.mqtt.{component}"
        try:
            schema = self.ha.module(module_name).DISCOVERY_SCHEMA
        except (ImportError, AttributeError) as err:
            raise InternalsMoved(f"{module_name}.DISCOVERY_SCHEMA not found: {err}") from err
        self.capture.take()
        try:
            config = dict(schema(dict(data)))
            if component == "device_automation" and config.get("automation_type") == "trigger":
                config = dict(self.ha["device_trigger.TRIGGER_DISCOVERY_SCHEMA"](dict(data)))
        except Exception as err:  # vol.Invalid / vol.MultipleInvalid
            self._flush_logs(topic, entity)
            self.report.problem("schema", topic, f"HA rejects the config: {err}", entity)
            return None
        self._flush_logs(topic, entity)
        category = str(config.get("entity_category"))
        if component in ("sensor", "binary_sensor") and category in (
            "config",
            "EntityCategory.CONFIG",
        ):
            # HA 2025.x refuses the entity when adding it; newer schemas reject it up front.
            self.report.problem(
                "schema",
                topic,
                f"a {component} cannot have entity_category 'config' (only 'diagnostic')",
                entity,
            )
            return None
        return config

    def _check_keys(
        self,
        component: str,
        topic: str,
        raw: dict[str, Any],
        checked: dict[str, Any],
        entity: str | None,
    ) -> None:
        for key in sorted(set(raw) - set(checked) - DISCOVERY_LEVEL_KEYS):
            if key in NEWER_KEYS:
                self.report.notes.append(
                    f"{topic}: '{key}' is ignored by HA {self.report.ha_version} "
                    f"(understood from HA {NEWER_KEYS[key]})"
                )
            else:
                self.report.problem(
                    "unknown_key",
                    topic,
                    f"unknown key '{key}' (HA {self.report.ha_version} silently drops it)",
                    entity,
                )
        self._check_entity_id(component, topic, raw, entity)

    def _check_entity_id(
        self, component: str, topic: str, raw: dict[str, Any], entity: str | None
    ) -> None:
        """Forward compatibility with current HA, whatever version is installed here."""
        default_entity_id = raw.get("default_entity_id", raw.get("def_ent_id"))
        if default_entity_id is not None:
            domain, _, suffix = str(default_entity_id).partition(".")
            if domain != component or not suffix or "." in suffix:
                self.report.problem(
                    "compat",
                    topic,
                    f"'default_entity_id' must be '{component}.<object_id>', got "
                    f"'{default_entity_id}' (HA >= 2025.10 keeps only the part after the '.')",
                    entity,
                )
        if "object_id" not in raw:
            return
        if default_entity_id is None:
            self.report.problem(
                "compat",
                topic,
                "'object_id' is deprecated since HA 2025.10 and ignored since 2026.4; add "
                f'"default_entity_id": "{component}.{raw["object_id"]}"',
                entity,
            )
        elif str(default_entity_id).partition(".")[2] != str(raw["object_id"]):
            self.report.problem(
                "compat",
                topic,
                f"'object_id' ({raw['object_id']}) and 'default_entity_id' "
                f"({default_entity_id}) disagree: old and new HA would name the entity apart",
                entity,
            )

    def _flush_logs(self, topic: str, entity: str | None, kind: str = "log") -> None:
        for line in self.capture.take():
            self.report.problem(kind, topic, f"HA logged: {line}", entity)
