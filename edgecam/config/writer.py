"""A small TOML writer (the standard library only reads TOML): `config show` and the web
page's zone editor write config text the loader reads back to the same values."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


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
