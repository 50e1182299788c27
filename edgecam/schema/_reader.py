"""A bounded JSON reader, and field readers that turn decoded JSON into checked Python values,
naming the path of a bad field.

Hand-written instead of running jsonschema so that subscribers need nothing beyond the standard
library; tests check that this reader and the shipped JSON Schema files agree on every case.

Any bytes from the network must end in a value or a PayloadError, never another exception, so
the reader bounds what the standard `json` module would otherwise turn into a crash or a stall:
nesting (its decoder recurses: RecursionError), integer literals (`int()` refuses more than
4300 digits with a ValueError, and is quadratic below that), NaN/Infinity (not JSON, but
accepted by `json`), lone UTF-16 surrogates (valid escapes that no UTF-8 writer can encode),
and the size of the payload itself.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from itertools import accumulate
from typing import Any

#: Largest JSON payload parsed. edgecam's largest message (100 detections) is about 25 kB.
MAX_JSON_BYTES = 1 << 20
#: Deepest nesting of arrays and objects accepted; edgecam's messages nest 4 levels at most.
MAX_DEPTH = 32
#: Longest integer literal accepted, sign excluded: 20 digits hold every 64-bit integer.
MAX_INT_DIGITS = 20

_ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$", re.ASCII)
# A JSON string, escapes included. An unterminated one runs to the end of the text, so every
# attempt succeeds at once: no backtracking, no rescans, linear time on any input.
_JSON_STRING = re.compile(r'"(?:[^"\\]+|\\.)*(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_DEPTH_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
_SURROGATE = re.compile("[\ud800-\udfff]")


class PayloadError(ValueError):
    """A payload does not follow the contract; `field` is the dotted path of the first bad field."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}" if field else problem)
        self.field = field
        self.problem = problem


def _nesting(text: str) -> int:
    """The deepest nesting of brackets outside strings; never less than what `json` reaches.

    Where the text is valid JSON this is exact; past the first error `json` stops, so counting
    more there is harmless. Runs at C speed (regex, accumulate), no recursion.
    """
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    return max(accumulate(map(_DEPTH_STEP.__getitem__, brackets)), default=0)


def _integer(literal: str) -> int:
    if len(literal.lstrip("-")) > MAX_INT_DIGITS:
        raise PayloadError(
            "(payload)", f"an integer of {len(literal.lstrip('-'))} digits is out of range"
        )
    return int(literal)


def _constant(name: str) -> Any:
    raise PayloadError("(payload)", f"not valid JSON: {name} is not a number in JSON")


def _check_text(value: Any) -> None:
    """Reject strings with lone surrogates (from \\ud800-style escapes), iteratively."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                raise PayloadError("(payload)", "a string holds a lone UTF-16 surrogate escape")
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def read_json(payload: bytes | str, *, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """Decode a JSON payload within the bounds above, or raise PayloadError saying which."""
    if len(payload) > max_bytes:
        raise PayloadError(
            "(payload)", f"{len(payload)} bytes is over the limit of {max_bytes} bytes"
        )
    if isinstance(payload, bytes | bytearray | memoryview):
        try:
            text = bytes(payload).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PayloadError("(payload)", f"not UTF-8 text: {exc.reason}") from None
    else:
        text = payload
    depth = _nesting(text)
    if depth > MAX_DEPTH:
        raise PayloadError("(payload)", f"nested {depth} levels deep, at most {MAX_DEPTH} allowed")
    try:
        value = json.loads(text, parse_int=_integer, parse_constant=_constant)
    except json.JSONDecodeError as exc:
        raise PayloadError("(payload)", f"not valid JSON: {exc.msg} at char {exc.pos}") from None
    _check_text(value)
    return value


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


class Obj:
    """A JSON object at `path`; each accessor checks one field and raises PayloadError if bad."""

    __slots__ = ("data", "path")

    def __init__(self, data: Any, path: str = "") -> None:
        if not isinstance(data, Mapping):
            raise PayloadError(path or "(payload)", f"expected a JSON object, got {_kind(data)}")
        self.data: Mapping[str, Any] = data
        self.path = path

    def where(self, key: str | int) -> str:
        if isinstance(key, int):
            return f"{self.path}[{key}]"
        return f"{self.path}.{key}" if self.path else key

    def get(self, key: str) -> Any:
        if key not in self.data:
            raise PayloadError(self.where(key), "required field is missing")
        return self.data[key]

    def fail(self, key: str, expected: str) -> PayloadError:
        return PayloadError(self.where(key), f"expected {expected}, got {_kind(self.data[key])}")

    def string(self, key: str, *, choices: tuple[str, ...] = (), min_len: int = 0) -> str:
        value = self.get(key)
        if not isinstance(value, str) or len(value) < min_len:
            raise self.fail(key, "a non-empty string" if min_len else "a string")
        if choices and value not in choices:
            raise self.fail(key, "one of " + ", ".join(repr(c) for c in choices))
        return value

    def integer(self, key: str, *, minimum: int | None = None) -> int:
        value = self.get(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, "an integer")
        if minimum is not None and value < minimum:
            raise self.fail(key, f"an integer >= {minimum}")
        return value

    def number(
        self, key: str, *, minimum: float | None = None, maximum: float | None = None
    ) -> float:
        value = self.get(key)
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        try:
            # + 0.0 turns -0.0 into 0.0; float() of a huge int (given as a Mapping) overflows.
            number = float(value) + 0.0 if is_number else math.nan
        except OverflowError:
            number = math.nan
        if not math.isfinite(number):
            raise self.fail(key, "a finite number")
        low = -math.inf if minimum is None else minimum
        high = math.inf if maximum is None else maximum
        if not low <= number <= high:
            bounds = f"in [{minimum}, {maximum}]" if maximum is not None else f">= {minimum}"
            raise self.fail(key, f"a number {bounds}")
        return number

    def optional_number(self, key: str, *, minimum: float | None = None) -> float | None:
        return None if self.get(key) is None else self.number(key, minimum=minimum)

    def obj(self, key: str) -> Obj:
        return Obj(self.get(key), self.where(key))

    def items(self, key: str) -> list[tuple[str, Any]]:
        """A JSON array: (path, element) pairs so elements can be read with their own paths."""
        value = self.get(key)
        if not isinstance(value, list):
            raise self.fail(key, "a list")
        return [(f"{self.where(key)}[{i}]", element) for i, element in enumerate(value)]

    def strings(self, key: str) -> tuple[str, ...]:
        out = []
        for path, element in self.items(key):
            if not isinstance(element, str):
                raise PayloadError(path, f"expected a string, got {_kind(element)}")
            out.append(element)
        return tuple(out)

    def timestamp(self, key: str) -> datetime:
        """ISO-8601 UTC with a Z suffix, as every edgecam timestamp is written."""
        value = self.get(key)
        if not isinstance(value, str) or not _ISO_UTC.match(value):
            raise self.fail(key, "an ISO-8601 UTC time like 2024-05-01T12:00:00.000Z")
        try:
            return datetime.fromisoformat(value[:-1]).replace(tzinfo=timezone.utc)
        except ValueError:
            raise self.fail(key, "a valid calendar date and time") from None

    def number_map(self, key: str) -> dict[str, float]:
        inner = self.obj(key)
        return {name: inner.number(name, minimum=0.0) for name in inner.data}
