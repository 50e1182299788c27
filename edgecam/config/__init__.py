"""Typed configuration: TOML file + CLI overrides, validated completely at load.

Errors name the file, the field path and the bad value, all at once, as a ConfigError (exit 2).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError

from edgecam.config.base import Section
from edgecam.config.core import ModelSection, OutputSection, SourceSection
from edgecam.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class EdgecamConfig(Section):
    """The whole file. Each table is one section class in its own module."""

    model: ModelSection = Field(default_factory=ModelSection)  # type: ignore[arg-type]
    source: SourceSection = Field(default_factory=SourceSection)  # type: ignore[arg-type]
    output: OutputSection = Field(default_factory=OutputSection)  # type: ignore[arg-type]


def _format_errors(origin: str, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"]) or "(top level)"
        value = err.get("input")
        shown = "" if isinstance(value, Mapping) else f": {value!r}"
        lines.append(f"{origin}: {path}{shown}: {err['msg']}")
    return "\n".join(lines)


def _merge(base: dict[str, Any], dotted: Mapping[str, Any]) -> dict[str, Any]:
    """Apply `section.field = value` overrides (None means 'not given') onto the file's dict."""
    merged = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for key, value in dotted.items():
        if value is None:
            continue
        section, _, field = key.partition(".")
        table = merged.setdefault(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{section}: expected a table, got {table!r}")
        table[field] = value
    return merged


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: config file not found") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from exc


def load_config(path: Path | None = None, overrides: Mapping[str, Any] | None = None) -> EdgecamConfig:
    """Read `path` (if any), apply dotted CLI overrides, validate everything at once."""
    raw = read_toml(path) if path else {}
    merged = _merge(raw, overrides or {})
    try:
        return EdgecamConfig.model_validate(merged)
    except ValidationError as exc:
        origin = str(path) if path else "command line"
        raise ConfigError(_format_errors(origin, exc)) from None
