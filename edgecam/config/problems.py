"""Pydantic's validation errors as one line per problem, in the user's words.

Each line names the origin (file or command line), the field path, the bad value (secrets
masked) and what is allowed, e.g. ``edgecam.toml: mqtt.port: 99999 is not a valid port
(1–65535)``.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Mapping
from typing import Any

import annotated_types
from pydantic import BaseModel, SecretStr, ValidationError
from pydantic.fields import FieldInfo

from edgecam.secrets import MASK, SECRET_KEYS, mask_url_password


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


_SHOWN_MAX = 80  # characters of a bad value quoted in a message: one line stays one line


def _shown(where: _Where, value: Any) -> str:
    if where.is_secret():
        return MASK
    if isinstance(value, str):
        text = repr(mask_url_password(value))
    elif isinstance(value, bool):
        return "true" if value else "false"
    else:
        text = repr(value)
    return text if len(text) <= _SHOWN_MAX else text[: _SHOWN_MAX - 1] + "…"


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
