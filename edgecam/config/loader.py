"""Read the TOML file, apply dotted overrides (`--set mqtt.port=1884`), validate all at once.

Every problem is reported at once, as one ConfigError (exit status 2), formatted by
:mod:`edgecam.config.problems`.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import SecretStr, ValidationError

from edgecam.config.problems import _union_members, _Where, describe_errors, format_problems
from edgecam.config.root import EdgecamConfig
from edgecam.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: config file not found") from exc
    except IsADirectoryError as exc:
        raise ConfigError(f"{path}: is a directory, expected a TOML file") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from exc


def load_config(
    path: Path | None = None, overrides: Mapping[str, Any] | None = None
) -> EdgecamConfig:
    """Read `path` (if any), apply dotted overrides (None = not given), validate all at once."""
    raw = read_toml(path) if path else {}
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    merged = merge_overrides(raw, given)
    try:
        return EdgecamConfig.model_validate(merged)
    except ValidationError as exc:
        origin = str(path) if path else "command line"
        problems = describe_errors(exc, EdgecamConfig, origin=origin, overridden=given)
        raise ConfigError(format_problems(problems)) from None


def merge_overrides(base: Mapping[str, Any], dotted: Mapping[str, Any]) -> dict[str, Any]:
    """Apply `a.b.c = value` overrides onto a copy of the file's nested dict."""
    merged = copy.deepcopy(dict(base))
    for key, value in dotted.items():
        parts = key.split(".")
        if len(parts) < 2 or not all(parts):
            raise ConfigError(f"override {key!r}: expected SECTION.KEY, e.g. mqtt.port")
        table = merged
        for depth, part in enumerate(parts[:-1]):
            child = table.setdefault(part, {})
            if not isinstance(child, dict):
                where = ".".join(parts[: depth + 1])
                raise ConfigError(f"override {key!r}: {where} is {child!r}, not a table")
            table = child
        table[parts[-1]] = value
    return merged


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """`["mqtt.port=1884"]` -> `{"mqtt.port": 1884}`: TOML value syntax, bare words are text.

    Text-typed fields (names, hosts, paths) always take the raw text, so `output.device_id=007`
    stays the string "007" instead of becoming the integer 7.
    """
    result: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or "." not in key or not all(key.split(".")):
            raise ConfigError(
                f"--set {item!r}: expected SECTION.KEY=VALUE, e.g. model.threshold=0.6"
            )
        field = _Where(EdgecamConfig, tuple(key.split("."))).field
        result[key] = _parse_value(raw.strip(), field.annotation if field else None)
    return result


def _parse_value(raw: str, annotation: Any) -> Any:
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw
    if _is_text(annotation) and not isinstance(value, str):
        return raw
    return value


def _is_text(annotation: Any) -> bool:
    members = _union_members(annotation)
    return bool(members) and all(m in (str, Path, SecretStr) for m in members)
