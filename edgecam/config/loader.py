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
from edgecam.dirs import read_regular_file
from edgecam.errors import ConfigError
from edgecam.logsetup import printable
from edgecam.secrets import SECRET_KEYS, url_passwords

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


#: Largest config file read: a real one is a few kB; this bounds `config check /dev/zero`-like
#: mistakes without ever refusing a plausible file.
MAX_CONFIG_BYTES = 1 << 20


def read_toml(path: Path) -> dict[str, Any]:
    """The TOML file at `path`, or ConfigError saying in one line what is wrong with it."""
    try:
        data = read_regular_file(path, MAX_CONFIG_BYTES)
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: config file not found") from exc
    except IsADirectoryError as exc:
        raise ConfigError(f"{path}: is a directory, expected a TOML file") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from exc
    try:
        text = data.decode("utf-8-sig")  # a BOM, as some editors write, is fine
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})",
            hint="save the file as UTF-8",
        ) from None
    return toml_loads(text, str(path))


def toml_loads(text: str, origin: str) -> dict[str, Any]:
    """tomllib.loads, plus what TOML requires and tomllib leaves out: integers beyond 64 bits
    are errors (else a 0xfff... of 5000 digits reaches str(), which refuses it). Its two
    failures that are not TOMLDecodeError become ConfigError too: deep nesting (it recurses:
    RecursionError) and decimal literals over 4300 digits (int() raises ValueError)."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{origin}: not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{origin}: not valid TOML: arrays or tables nested too deeply") from None
    except ValueError:
        raise ConfigError(f"{origin}: not valid TOML: a number literal is too long") from None
    _check_integers(document, origin)
    return document


def _check_integers(document: Any, origin: str) -> None:
    stack = [document]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, int) and not -(2**63) <= item < 2**63:
            raise ConfigError(f"{origin}: not valid TOML: an integer outside 64 bits")


def load_config(
    path: Path | None = None, overrides: Mapping[str, Any] | None = None
) -> EdgecamConfig:
    """Read `path` (if any), apply dotted overrides (None = not given), validate all at once."""
    raw = read_toml(path) if path else {}
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    for key, value in given.items():
        if isinstance(value, str) and url_passwords(value):
            raise ConfigError(_url_password_on_command_line(key))
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
                f"--set {printable(key)!r}=...: expected SECTION.KEY=VALUE, "
                "e.g. model.threshold=0.6"
            )
        where = _Where(EdgecamConfig, tuple(key.split(".")))
        if where.is_secret():
            raise ConfigError(_secret_on_command_line(key, where))
        field = where.field
        value = _parse_value(raw.strip(), field.annotation if field else None)
        hidden = _secret_key_in(value)
        if hidden:
            raise ConfigError(_secret_on_command_line(f"{key}.{hidden}", None))
        result[key] = value
    return result


def _secret_key_in(value: Any) -> str | None:
    """A key of SECRET_KEYS anywhere in an inline table (`--set x.y={password="..."}`)."""
    if isinstance(value, Mapping):
        for name, item in value.items():
            if name in SECRET_KEYS:
                return str(name)
            inner = _secret_key_in(item)
            if inner:
                return f"{name}.{inner}"
    if isinstance(value, list):
        for item in value:
            inner = _secret_key_in(item)
            if inner:
                return inner
    return None


def _url_password_on_command_line(key: str) -> str:
    """`--source rtsp://u:pw@cam/`, `--mqtt mqtts://u:pw@host`, `--set x=URL`: same reason."""
    section = key.split(".", 1)[0]
    instead = f"{section}.password_file or {section}.password_env with USER@ in the URL"
    return (
        f"{key} (command line): a password in a URL on the command line is visible to every "
        f"user in `ps` and stays in shell history; use {instead}, or put the URL in the config "
        "file (mode 0600)"
    )


def _secret_on_command_line(key: str, where: _Where | None) -> str:
    """The same reason a password in a URL is refused: argv is world-readable (`ps`,
    /proc/PID/cmdline) and lands in shell history. Say where the secret can go instead."""
    section, _, name = key.rpartition(".")
    fields = where.parent.model_fields if where and where.parent else {}
    others = [f"{section}.{name}{end}" for end in ("_file", "_env") if name + end in fields]
    instead = " or ".join(others) if others else f"{key} in the config file (mode 0600)"
    return (
        f"--set {key}: a secret on the command line is visible to every user in `ps` and "
        f"stays in shell history; use {instead}"
    )


def _parse_value(raw: str, annotation: Any) -> Any:
    try:
        value = toml_loads(f"v = {raw}", "--set")["v"]
    except ConfigError:  # not a TOML value: the raw text (a bare word)
        return raw
    if _is_text(annotation) and not isinstance(value, str):
        return raw
    return value


def _is_text(annotation: Any) -> bool:
    members = _union_members(annotation)
    return bool(members) and all(m in (str, Path, SecretStr) for m in members)
