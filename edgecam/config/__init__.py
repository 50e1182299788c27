"""Typed configuration: TOML file + CLI overrides, validated completely at load.

One section class per table, each in its own module; this module assembles the root, applies
dotted overrides (`--set mqtt.port=1884`) and turns pydantic's errors into one line per problem
that names the origin (file or command line), the field path, the bad value and what is
allowed, e.g. ``edgecam.toml: mqtt.port: 99999 is not a valid port (1–65535)``. Every problem
is reported at once, as one ConfigError (exit status 2).
"""

from __future__ import annotations

import copy
import difflib
import re
import sys
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import annotated_types
from pydantic import BaseModel, Field, SecretStr, ValidationError, model_validator
from pydantic.fields import FieldInfo

from edgecam.config.base import Section
from edgecam.config.core import ModelSection, OutputSection, SourceSection
from edgecam.config.events import (
    EventsSection,
    ObjectsSection,
    SnapshotsSection,
    TrackingSection,
    ZoneList,
)
from edgecam.config.mqtt import HomeAssistantConfig, MqttConfig, OutboxConfig, StatsConfig
from edgecam.config.pipeline import PipelineSection
from edgecam.config.service import LoggingSection, ServiceSection
from edgecam.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_CONFIG_PATH = Path("/etc/edgecam/edgecam.toml")
#: Keys whose values are secrets wherever they appear (masked by `config show`, never logged).
SECRET_KEYS = frozenset({"password", "passphrase", "secret", "token", "api_key"})
MASK = "********"
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^/@:\s]*:)(?P<pw>[^/@\s]+)(?=@)", re.I)


_S = TypeVar("_S", bound=BaseModel)


def _default(section: type[_S]) -> Callable[[], _S]:
    """Default factory typed for mypy (pydantic's generated __init__ hides the defaults)."""
    return lambda: section.model_validate({})


class EdgecamConfig(Section):
    """The whole file. Each table is one section class in its own module.

    Every section has a default for each field, so an empty file is a valid config.
    """

    model: ModelSection = Field(default_factory=_default(ModelSection))
    source: SourceSection = Field(default_factory=_default(SourceSection))
    output: OutputSection = Field(default_factory=_default(OutputSection))
    pipeline: PipelineSection = Field(default_factory=_default(PipelineSection))
    mqtt: MqttConfig = Field(default_factory=_default(MqttConfig))
    outbox: OutboxConfig = Field(default_factory=_default(OutboxConfig))
    stats: StatsConfig = Field(default_factory=_default(StatsConfig))
    homeassistant: HomeAssistantConfig = Field(default_factory=_default(HomeAssistantConfig))
    events: EventsSection = Field(default_factory=_default(EventsSection))
    tracking: TrackingSection = Field(default_factory=_default(TrackingSection))
    objects: ObjectsSection = Field(default_factory=_default(ObjectsSection))
    zones: ZoneList = Field(default=(), description="[[zones]] polygons")
    snapshots: SnapshotsSection = Field(default_factory=_default(SnapshotsSection))
    service: ServiceSection = Field(default_factory=_default(ServiceSection))
    logging: LoggingSection = Field(default_factory=_default(LoggingSection))

    @model_validator(mode="after")
    def _stop_budget(self) -> EdgecamConfig:
        """The pipeline's join deadline is part of the whole graceful-stop budget."""
        if self.pipeline.stop_timeout_s >= self.service.stop_deadline_s:
            raise ValueError(
                f"pipeline.stop_timeout_s ({self.pipeline.stop_timeout_s:g}) must be below "
                f"service.stop_deadline_s ({self.service.stop_deadline_s:g}): the sinks need "
                "time to flush after the pipeline stops"
            )
        return self


# -- loading ---------------------------------------------------------------------------------


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


# -- field introspection ---------------------------------------------------------------------


def _union_members(annotation: Any) -> list[Any]:
    """`X | None` -> [X]; `X | Y` -> [X, Y]; anything else -> [annotation]."""
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        return [a for a in typing.get_args(annotation) if a is not type(None)]
    return [annotation]


def _model_in(annotation: Any) -> type[BaseModel] | None:
    for member in _union_members(annotation):
        if isinstance(member, type) and issubclass(member, BaseModel):
            return member
    return None


class _Where:
    """Where an error points: user-facing path, the field (if known) and its parent model."""

    def __init__(self, root: type[BaseModel], loc: tuple[int | str, ...]) -> None:
        self.parts: list[str] = []
        self.field: FieldInfo | None = None
        self.parent: type[BaseModel] | None = None
        self.name = ""
        current: Any = root
        for item in loc:
            model = _model_in(current)
            args = typing.get_args(current)
            if model is not None and item in model.model_fields:
                self.parent, self.name = model, str(item)
                self.field = model.model_fields[str(item)]
                current = self.field.annotation
                self.parts.append(str(item))
            elif model is not None and item == loc[-1]:  # an unknown key
                self.parent, self.name, self.field = model, str(item), None
                self.parts.append(str(item))
            elif isinstance(item, int):
                self.parts[-1:] = [f"{self.parts[-1] if self.parts else ''}[{item}]"]
                current = args[0] if args else None
            elif typing.get_origin(current) in (dict, Mapping) and len(args) == 2:
                self.parts.append(str(item))
                current = args[1]
            # else: a union member tag such as 'str' or 'int' - not part of the user's path

    @property
    def path(self) -> str:
        return ".".join(self.parts)

    def is_secret(self) -> bool:
        annotation = self.field.annotation if self.field else None
        return self.name in SECRET_KEYS or SecretStr in _union_members(annotation)


# -- error messages --------------------------------------------------------------------------

_KINDS = {
    "string_type": "text (quote it in TOML)",
    **dict.fromkeys(("int_type", "int_parsing", "int_from_float"), "a whole number"),
    **dict.fromkeys(("float_type", "float_parsing"), "a number"),
    "finite_number": "a finite number",
    **dict.fromkeys(("bool_type", "bool_parsing"), "true or false"),
    **dict.fromkeys(("list_type", "tuple_type"), 'a list, e.g. ["a", "b"]'),
    **dict.fromkeys(("dict_type", "model_type", "model_attributes_type"), "a table"),
    "path_type": "a file system path (text)",
}
_LENGTHS = {"too_short", "too_long", "string_too_short", "string_too_long"}
_BOUNDS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}


def describe_errors(
    exc: ValidationError,
    root: type[BaseModel],
    *,
    origin: str,
    overridden: Mapping[str, Any] | None = None,
) -> list[str]:
    """One `origin: path: problem` line per distinct problem, union alternatives merged."""
    grouped: dict[str, tuple[_Where, list[dict[str, Any]]]] = {}
    located = [(_Where(root, tuple(e["loc"])), e) for e in exc.errors()]
    deeper = {w.path for w, _ in located}
    for where, err in located:
        if err["type"] in _LENGTHS and any(
            p.startswith(where.path) and p != where.path for p in deeper
        ):
            continue  # "too short" only because an item failed: the item's error says why
        key = f"{where.path}\0{err['type'] if err['type'] not in _KINDS else 'kind'}"
        grouped.setdefault(key, (where, []))[1].append(dict(err))
    lines = []
    for where, errors in grouped.values():
        source = _origin_of(where.path, origin, overridden or {})
        path = f"{where.path}: " if where.path else ""
        lines.append(f"{source}: {path}{_problem(where, errors)}")
    return lines


def format_problems(problems: list[str]) -> str:
    if len(problems) == 1:
        return problems[0]
    return f"{len(problems)} problems in the config:\n" + "\n".join(problems)


def _origin_of(path: str, origin: str, overridden: Mapping[str, Any]) -> str:
    for key in overridden:
        if path == key or path.startswith(key + ".") or path.startswith(key + "["):
            return "command line"
    return origin


def _shown(where: _Where, value: Any) -> str:
    if where.is_secret():
        return MASK
    if isinstance(value, str):
        return repr(mask_url_password(value))
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def _problem(where: _Where, errors: list[dict[str, Any]]) -> str:
    err = errors[0]
    kind, value = err["type"], err.get("input")
    if kind == "extra_forbidden":
        return _unknown_key(where)
    if kind == "missing":
        return "required, but not set"
    if kind.startswith("edgecam_"):
        return str(err["msg"])  # custom messages already name the value and what is allowed
    shown = _shown(where, value)
    if kind in _KINDS:
        wanted = " or ".join(dict.fromkeys(_KINDS.get(e["type"], e["type"]) for e in errors))
        return f"{shown} is not {wanted}"
    if kind in _BOUNDS:
        return _out_of_range(where, shown)
    if kind in _LENGTHS:
        return _bad_length(where, kind, value, shown, err.get("ctx", {}))
    if kind == "string_pattern_mismatch":
        hint = f" ({where.field.description})" if where.field and where.field.description else ""
        return f"{shown} does not match {err.get('ctx', {}).get('pattern')}{hint}"
    if kind == "literal_error":
        return _not_allowed(where, value, shown, str(err.get("ctx", {}).get("expected", "")))
    message = str(err["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if isinstance(value, Mapping) or repr(value) in message or shown in message:
        return message
    return f"{shown}: {message}"


def _unknown_key(where: _Where) -> str:
    allowed = list(where.parent.model_fields) if where.parent else []
    what = "unknown section" if len(where.parts) == 1 else "unknown key"
    close = difflib.get_close_matches(where.name, allowed, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{what}{hint}; allowed: {', '.join(allowed)}"


def _bounds(field: FieldInfo | None) -> tuple[str, str]:
    """(low, high) texts such as ('≥ 1', '≤ 64') from the field's constraints."""
    low = high = ""
    for meta in field.metadata if field else []:
        if isinstance(meta, annotated_types.Ge):
            low = f"≥ {meta.ge}"
        elif isinstance(meta, annotated_types.Gt):
            low = f"> {meta.gt}"
        elif isinstance(meta, annotated_types.Le):
            high = f"≤ {meta.le}"
        elif isinstance(meta, annotated_types.Lt):
            high = f"< {meta.lt}"
    return low, high


def _out_of_range(where: _Where, shown: str) -> str:
    low, high = _bounds(where.field)
    if low.startswith("≥") and high.startswith("≤"):
        allowed = f"{low[2:]}–{high[2:]}"
    else:
        allowed = " and ".join(b for b in (low, high) if b)
    name = where.name
    if name == "port" or name.endswith("_port"):
        return f"{shown} is not a valid port ({allowed})"
    if name in ("threshold", "min_score") or name.endswith(("_score", "score_threshold")):
        return f"{shown} is not a valid score threshold ({allowed})"
    return f"{shown} is out of range ({allowed})"


def _bad_length(where: _Where, kind: str, value: Any, shown: str, ctx: Mapping[str, Any]) -> str:
    unit = "characters" if kind.startswith("string") else "items"
    got = len(value) if isinstance(value, str | list | tuple | dict) else "?"
    if kind.endswith("short"):
        return f"{shown} has {got} {unit}, at least {ctx.get('min_length')} needed"
    return f"{shown} has {got} {unit}, at most {ctx.get('max_length')} allowed"


def _not_allowed(where: _Where, value: Any, shown: str, expected: str) -> str:
    if where.name == "qos":
        return f"{shown} is not a valid MQTT QoS ({expected})"
    choices: list[str] = []
    for member in _union_members(where.field.annotation if where.field else None):
        choices += [str(c) for c in typing.get_args(member)]
    close = difflib.get_close_matches(str(value), choices, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{shown} is not one of {expected}{hint}"


# -- secrets ---------------------------------------------------------------------------------


def mask_url_password(text: str) -> str:
    """`rtsp://user:pw@cam/` -> `rtsp://user:********@cam/`."""
    return _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, text)


def masked_dict(config: BaseModel) -> dict[str, Any]:
    """The config as plain TOML-able data with every secret replaced by MASK."""
    return _mask(config.model_dump(mode="python"))  # type: ignore[no-any-return]


def _mask(value: Any, key: str = "") -> Any:
    if isinstance(value, SecretStr) or (key in SECRET_KEYS and value not in (None, "")):
        return MASK
    if isinstance(value, Mapping):
        return {k: _mask(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, str):
        return mask_url_password(value)
    return value


def secret_values(config: BaseModel) -> list[str]:
    """Secret strings present in the config itself, for the log redaction filter."""
    found: list[str] = []

    def walk(value: Any, key: str = "") -> None:
        if isinstance(value, SecretStr):
            found.append(value.get_secret_value())
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name), name)
        elif isinstance(value, Mapping):
            for k, v in value.items():
                walk(v, str(k))
        elif isinstance(value, list | tuple):
            for v in value:
                walk(v)
        elif isinstance(value, str):
            if key in SECRET_KEYS:
                found.append(value)
            found.extend(m.group("pw") for m in _URL_PASSWORD.finditer(value))

    walk(config)
    return [s for s in dict.fromkeys(found) if s]
