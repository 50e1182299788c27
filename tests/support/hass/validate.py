"""Validate captured MQTT traffic the way Home Assistant's MQTT discovery would.

Run with the Python of a venv that has `homeassistant` (tests/support/hass_venv.py makes one),
from the repository root:

    HASS_VENV/bin/python -m tests.support.hass.validate MESSAGES.json [-o REPORT.json]
        [--discovery-prefix homeassistant]

MESSAGES.json: a list of {"topic", "payload" (str) or "payload_b64", "retained"} in the order
received. Discovery messages go through HA's own processing (discovery.py); then every other
message is checked against the configs still active at the end, on each topic they use
(states.py). Output (stdout, and -o FILE): {"ha_version", "configs_checked",
"messages_checked", "problems": [{"kind", "topic", "entity", "message"}], "notes",
"entities": [{"platform", "name", "unique_id", "topics", "discovery_topic"}]}.
Exit status: 0 no problems, 1 problems, 2 bad input or HA internals not where expected.
Problem kinds: json, topic, schema, origin, log, unknown_key, compat, duplicate, state.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

from tests.support.hass import internals
from tests.support.hass.discovery import Capture, Discovery, Report
from tests.support.hass.states import States, routes, text


def _load_messages(path: Path) -> list[dict[str, Any]]:
    messages = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(messages, list) or not all(
        isinstance(m, dict) and isinstance(m.get("topic"), str) for m in messages
    ):
        raise ValueError("input must be a JSON list of {topic, payload, retained} objects")
    return messages


async def validate(ha: internals.HA, messages: list[dict[str, Any]], prefix: str) -> dict[str, Any]:
    """The report for one capture (needs a running event loop for HA's template engine)."""
    hass = ha["core.HomeAssistant"](tempfile.mkdtemp(prefix="hass_validate_"))
    report = Report(ha_version=ha.version)
    capture = Capture()
    root = logging.getLogger()
    root.handlers = [capture]
    root.setLevel(logging.WARNING)
    discovery = Discovery(ha, prefix, report, capture)
    for msg in messages:
        topic = msg["topic"]
        if topic.startswith(f"{prefix}/") and topic.endswith("/config"):
            discovery.handle(topic, text(msg))
    configs = list(discovery.configs.values())
    states = States(ha, hass, report, capture)
    states.check(configs, messages, prefix)
    return {
        "ha_version": report.ha_version,
        "configs_checked": discovery.checked,
        "messages_checked": states.checked,
        "problems": report.problems,
        "notes": report.notes,
        "entities": [
            {
                "platform": item.component,
                "name": item.config.get("name", item.config.get("subtype")),
                "unique_id": item.config.get("unique_id"),
                "topics": {role: topic for role, topic, _ in routes(item)},
                "discovery_topic": item.discovery_topic,
            }
            for item in configs
        ],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("messages", type=Path, help="JSON list of captured MQTT messages")
    parser.add_argument("-o", "--output", type=Path, help="also write the report to this file")
    parser.add_argument("--discovery-prefix", default="homeassistant")
    args = parser.parse_args(argv)
    try:
        ha = internals.load()
        messages = _load_messages(args.messages)
        result = asyncio.run(validate(ha, messages, args.discovery_prefix))
    except internals.InternalsMoved as err:
        print(f"validate: {err}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as err:
        print(f"validate: bad input: {err}", file=sys.stderr)
        return 2
    out = json.dumps(result, indent=2, default=str)
    print(out)
    if args.output:
        args.output.write_text(out + "\n", encoding="utf-8")
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
