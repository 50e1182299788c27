"""State, availability, image, event and command messages against the discovered configs.

Each check mirrors what the platform's MQTT message callback does with a payload (templates
rendered by HA's own ``MqttValueTemplate``) and says why HA would ignore or reject it. These
are not HA's entity objects: running those needs a whole MQTT integration set-up.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Callable
from typing import Any

from tests.support.hass.discovery import Capture, Config, Report
from tests.support.hass.internals import HA, MAX_STATE_LENGTH, PAYLOAD_NONE

IMAGE_MAGIC = {
    "image/jpeg": [b"\xff\xd8\xff"],
    "image/png": [b"\x89PNG\r\n\x1a\n"],
    "image/gif": [b"GIF87a", b"GIF89a"],
    "image/webp": [b"RIFF"],
}
Route = tuple[str, str, dict[str, Any]]  # (role, topic, extra)


def topic_matches(subscription: str, topic: str) -> bool:
    """MQTT wildcard match (+ one level, # the rest)."""
    sub_levels, top_levels = subscription.split("/"), topic.split("/")
    for i, level in enumerate(sub_levels):
        if level == "#":
            return True
        if i >= len(top_levels) or level not in ("+", top_levels[i]):
            return False
    return len(sub_levels) == len(top_levels)


def text(msg: dict[str, Any]) -> str:
    if "payload_b64" in msg:
        return base64.b64decode(msg["payload_b64"]).decode("utf-8")
    return "" if msg.get("payload") is None else str(msg["payload"])


def raw_bytes(msg: dict[str, Any]) -> bytes:
    if "payload_b64" in msg:
        return base64.b64decode(msg["payload_b64"])
    return text(msg).encode("utf-8")


def routes(item: Config) -> list[Route]:
    """Every topic the item subscribes or publishes to, with its role."""
    cfg = item.config
    if item.component in ("device_automation", "tag"):
        return [("trigger" if item.component == "device_automation" else "tag", cfg["topic"], {})]
    out: list[Route] = []
    for role in ("state", "json_attributes", "image", "url", "command"):
        if cfg.get(f"{role}_topic"):
            out.append((role, cfg[f"{role}_topic"], {}))
    if cfg.get("availability_topic"):
        out.append(
            (
                "availability",
                cfg["availability_topic"],
                {
                    "on": cfg["payload_available"],
                    "off": cfg["payload_not_available"],
                    "template": cfg.get("availability_template"),
                },
            )
        )
    for avail in cfg.get("availability") or []:
        out.append(
            (
                "availability",
                avail["topic"],
                {
                    "on": avail["payload_available"],
                    "off": avail["payload_not_available"],
                    "template": avail.get("value_template"),
                },
            )
        )
    return out


class States:
    """Checks every non-discovery message on a topic some active config uses."""

    def __init__(self, ha: HA, hass: Any, report: Report, capture: Capture) -> None:
        self.ha = ha
        self.hass = hass
        self.report = report
        self.capture = capture
        self.checked = 0
        self.sentinel = ha["models.PayloadSentinel"].DEFAULT

    def render(self, template: Any) -> Callable[..., Any] | None:
        if template is None:
            return None
        if isinstance(template, str):
            template = self.ha["template.Template"](template, self.hass)
        if getattr(template, "hass", None) is None:
            template.hass = self.hass
        mqtt_template = self.ha["models.MqttValueTemplate"](template)
        return mqtt_template.async_render_with_possible_json_value  # type: ignore[no-any-return]

    def check(self, configs: list[Config], messages: list[dict[str, Any]], prefix: str) -> None:
        table = [
            (role, topic, item, extra) for item in configs for role, topic, extra in routes(item)
        ]
        seen: set[tuple[str, str]] = set()
        for msg in messages:
            topic = msg["topic"]
            hits = [r for r in table if topic_matches(r[1], topic)]
            if topic.startswith(f"{prefix}/") or not hits:
                continue
            self.checked += 1
            triggers = [r[2] for r in hits if r[0] == "trigger"]
            if triggers:
                self._triggers(msg, triggers)
            for role, _sub, item, extra in hits:
                if role != "trigger":
                    seen.add((item.label, role))
                    self._one(role, item, extra, msg)
        for item in configs:
            for role, sub, _ in routes(item):
                wanted = role in ("state", "image", "url", "availability")
                if wanted and (item.label, role) not in seen:
                    self.report.notes.append(f"{item.label}: no message seen on {role} topic {sub}")

    def _one(self, role: str, item: Config, extra: dict[str, Any], msg: dict[str, Any]) -> None:
        self.capture.take()
        try:
            error = self._dispatch(role, item, extra, msg)
        except Exception as err:  # template errors and the like
            error = f"{type(err).__name__}: {err}"
        for line in self.capture.take():
            self.report.problem(
                "log", msg["topic"], f"HA logged while handling {role}: {line}", item.label
            )
        if error:
            self.report.problem("state", msg["topic"], f"{role}: {error}", item.label)

    def _dispatch(
        self, role: str, item: Config, extra: dict[str, Any], msg: dict[str, Any]
    ) -> str | None:
        if role == "availability":
            return self._availability(extra, text(msg))
        if role == "json_attributes":
            return self._attributes(item.config, text(msg))
        if role == "image":
            return self._image(item.config, raw_bytes(msg))
        if role == "url":
            return self._url(item.config, text(msg))
        if role == "command":
            return self._command(item, text(msg))
        if role == "state":
            return self._state(item, msg)
        return None

    def _availability(self, extra: dict[str, Any], payload: str) -> str | None:
        render = self.render(extra["template"])
        value = render(payload) if render else payload
        if value not in (extra["on"], extra["off"]):
            return (
                f"payload '{payload}' (rendered '{value}') is neither "
                f"'{extra['on']}' nor '{extra['off']}': HA ignores it"
            )
        return None

    def _attributes(self, cfg: dict[str, Any], payload: str) -> str | None:
        render = self.render(cfg.get("json_attributes_template"))
        value = render(payload) if render else payload
        try:
            parsed = json.loads(value)
        except ValueError:
            return f"not JSON: '{value[:80]}'"
        return None if isinstance(parsed, dict) else "JSON is not an object"

    @staticmethod
    def _image(cfg: dict[str, Any], data: bytes) -> str | None:
        if cfg.get("image_encoding") == "b64":
            try:
                data = base64.b64decode(data, validate=True)
            except (binascii.Error, ValueError) as err:
                return f"image_encoding b64 but payload is not base64: {err}"
        content_type = cfg.get("content_type", "image/jpeg")
        magics = IMAGE_MAGIC.get(content_type)
        if not data:
            return "empty image payload"
        if magics and not any(data.startswith(m) for m in magics):
            return f"payload does not look like {content_type} (starts {data[:4]!r})"
        return None

    def _url(self, cfg: dict[str, Any], payload: str) -> str | None:
        render = self.render(cfg.get("url_template"))
        value = render(payload) if render else payload
        try:
            self.ha["config_validation.url"](value)
        except Exception:
            return f"not a valid URL: '{value}'"
        return None

    @staticmethod
    def _command(item: Config, payload: str) -> str | None:
        cfg = item.config
        if item.component == "button":
            want = {cfg["payload_press"]}
        elif item.component == "switch":
            want = {cfg["payload_on"], cfg["payload_off"]}
        else:
            return None
        if cfg.get("command_template") or payload in want:
            return None  # HA renders templated commands itself: nothing to invert
        return f"command payload '{payload}' is not one of {sorted(want)}"

    def _state(self, item: Config, msg: dict[str, Any]) -> str | None:
        cfg, payload = item.config, text(msg)
        if item.component == "binary_sensor":
            return self._binary(cfg, payload)
        if item.component == "switch":
            render = self.render(cfg.get("value_template"))
            value = render(payload) if render else payload
            on, off = (
                cfg.get("state_on") or cfg["payload_on"],
                cfg.get("state_off") or cfg["payload_off"],
            )
            if value not in (on, off, PAYLOAD_NONE):
                return f"state '{value}' is neither '{on}' nor '{off}': HA ignores it"
            return None
        if item.component == "sensor":
            return self._sensor(cfg, payload)
        if item.component == "event":
            return self._event(cfg, payload, bool(msg.get("retained")))
        return None

    def _binary(self, cfg: dict[str, Any], payload: str) -> str | None:
        render = self.render(cfg.get("value_template"))
        value = render(payload) if render else payload
        if not str(value).strip():
            return f"payload '{payload}' renders empty: HA ignores it"
        if value not in (cfg["payload_on"], cfg["payload_off"], PAYLOAD_NONE):
            return (
                f"payload '{payload}' (rendered '{value}') matches neither payload_on "
                f"'{cfg['payload_on']}' nor payload_off '{cfg['payload_off']}': HA ignores it"
            )
        return None

    def _event(self, cfg: dict[str, Any], payload: str, retained: bool) -> str | None:
        if retained:
            return "retained event message: HA ignores replayed (retained) events"
        render = self.render(cfg.get("value_template"))
        value = render(payload, self.sentinel) if render else payload
        if value is self.sentinel or not value or value in (PAYLOAD_NONE, "{}"):
            return f"payload '{payload}' renders empty: HA ignores it"
        try:
            attrs = json.loads(value)
        except ValueError:
            return f"event payload is not JSON: '{str(value)[:80]}'"
        if not isinstance(attrs, dict) or "event_type" not in attrs:
            return "event payload has no 'event_type'"
        if str(attrs["event_type"]) not in cfg["event_types"]:
            return f"event_type '{attrs['event_type']}' is not in event_types {cfg['event_types']}"
        return None

    def _sensor(self, cfg: dict[str, Any], payload: str) -> str | None:
        render = self.render(cfg.get("value_template"))
        value = render(payload, self.sentinel) if render else payload
        if value is self.sentinel:
            return f"value_template gave no value for '{payload}': HA ignores it"
        if not isinstance(value, str):
            return f"value is not a string: {value!r}"
        if value == PAYLOAD_NONE:
            return None
        device_class = cfg.get("device_class")
        try:
            dc = self.ha["sensor.SensorDeviceClass"](device_class) if device_class else None
        except ValueError:
            dc = None
        numeric = self.ha["sensor._numeric_state_expected"](
            dc,
            cfg.get("state_class"),
            cfg.get("unit_of_measurement"),
            cfg.get("suggested_display_precision"),
        )
        if cfg.get("options") is not None:
            options = cfg["options"]
            return None if value in options else f"'{value}' is not one of options {options}"
        if numeric:
            return _numeric_problem(cfg, value)
        if device_class in ("timestamp", "date"):
            if self.ha["dt.parse_datetime"](value) is None:
                return f"'{value}' is not a datetime for device_class {device_class}"
            return None
        if len(value) > MAX_STATE_LENGTH:
            return f"state longer than {MAX_STATE_LENGTH} characters: HA sets unknown"
        return None

    def _triggers(self, msg: dict[str, Any], triggers: list[Config]) -> None:
        payload = text(msg)
        for item in triggers:
            wanted = item.config.get("payload")
            if wanted is None:
                return
            render = self.render(item.config.get("value_template"))
            value = render(payload, self.sentinel) if render else payload
            if value is not self.sentinel and value == wanted:
                return
        payloads = sorted(str(t.config.get("payload")) for t in triggers)
        self.report.problem(
            "state",
            msg["topic"],
            f"trigger payload '{payload}' fires none of the triggers on this topic ({payloads})",
            ", ".join(t.label for t in triggers),
        )


def _numeric_problem(cfg: dict[str, Any], value: str) -> str | None:
    if value == "":
        return "empty state for a numeric sensor: HA ignores it"
    try:
        number = float(value)
    except ValueError:
        return (
            f"non-numeric state '{value}' but the sensor is numeric (device_class="
            f"{cfg.get('device_class')}, state_class={cfg.get('state_class')}, unit="
            f"{cfg.get('unit_of_measurement')}): HA raises ValueError"
        )
    if not math.isfinite(number):
        return f"non-finite state '{value}' for a numeric sensor"
    return None
