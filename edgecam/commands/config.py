"""`edgecam config check|show`: validate a config without running, print the effective one.

`show` prints TOML that loads back to the same config (secrets replaced by a mask), with
unset optional fields as comments so every available key is visible in one place.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from edgecam.commands.common import add_set_flag
from edgecam.config import DEFAULT_CONFIG_PATH, EdgecamConfig, load_config, parse_overrides
from edgecam.errors import EXIT_OK
from edgecam.secrets import masked

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "config",
        help="check a config file, or show the effective config",
        description="Validate the TOML config (all problems at once) or print the effective one.",
    )
    sub = parser.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    check = sub.add_parser("check", help="validate a config file without running (exit 2 if bad)")
    check.add_argument(
        "path", nargs="?", type=Path, default=None, help=f"default: {DEFAULT_CONFIG_PATH}"
    )
    add_set_flag(check)
    check.set_defaults(handler=check_command)
    show = sub.add_parser("show", help="print the effective config as TOML, secrets masked")
    show.add_argument("--config", "-c", type=Path, help="TOML config file (default: none)")
    add_set_flag(show)
    show.set_defaults(handler=show_command)


def check_command(args: argparse.Namespace) -> int:
    path: Path = args.path or DEFAULT_CONFIG_PATH
    config = load_config(path, parse_overrides(args.set_values))
    for warning in missing_files(config):
        print(f"warning: {warning}")
    print(f"{path}: OK")
    return EXIT_OK


def show_command(args: argparse.Namespace) -> int:
    config = load_config(args.config, parse_overrides(args.set_values))
    origin = str(args.config) if args.config else "built-in defaults"
    extra = f" + {len(args.set_values)} --set override(s)" if args.set_values else ""
    print(f"# edgecam effective config: {origin}{extra}; secrets masked")
    print(dump_toml(masked(config)), end="")
    return EXIT_OK


def missing_files(config: EdgecamConfig) -> list[str]:
    """Input files the config names that do not exist here (warnings: the config may be
    written on a laptop for a Pi)."""
    return [
        f"{path}: {value} does not exist on this machine"
        for path, value in _walk(config)
        if path.rsplit(".", 1)[-1].endswith("_file")
        and isinstance(value, Path)
        and not value.exists()
    ]


def _walk(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _walk(getattr(value, name), f"{path}.{name}" if path else name)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _walk(item, f"{path}.{key}")
    else:
        yield path, value


# -- a small TOML writer (the standard library only reads TOML) ------------------------------


def dump_toml(data: Mapping[str, Any]) -> str:
    """Nested dicts -> tables, lists of dicts -> arrays of tables; None -> a comment line."""
    lines: list[str] = []
    _table(lines, [], data)
    return "\n".join(lines).lstrip("\n") + "\n"


def _is_table_array(value: Any) -> bool:
    return (
        isinstance(value, list | tuple)
        and bool(value)
        and all(isinstance(v, Mapping) for v in value)
    )


def _table(lines: list[str], prefix: list[str], table: Mapping[str, Any]) -> None:
    plain = [(k, v) for k, v in table.items() if not isinstance(v, Mapping)]
    plain = [(k, v) for k, v in plain if not _is_table_array(v)]
    for key, value in plain:
        lines.append(
            f"# {_key(key)} = (not set)" if value is None else f"{_key(key)} = {_value(value)}"
        )
    for key, value in table.items():
        if isinstance(value, Mapping):
            lines += ["", f"[{_dotted([*prefix, key])}]"]
            _table(lines, [*prefix, key], value)
        elif _is_table_array(value):
            for item in value:
                lines += ["", f"[[{_dotted([*prefix, key])}]]"]
                _table(lines, [*prefix, key], item)


def _dotted(parts: list[str]) -> str:
    return ".".join(_key(p) for p in parts)


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key, ensure_ascii=False)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value), ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        inner = ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items() if v is not None)
        return "{ " + inner + " }" if inner else "{}"
    raise TypeError(f"cannot write {type(value).__name__} as TOML: {value!r}")
