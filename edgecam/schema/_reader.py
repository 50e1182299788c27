"""Field readers that turn decoded JSON into checked Python values, naming the path of a bad field.

Hand-written instead of running jsonschema so that subscribers need nothing beyond the standard
library; tests check that this reader and the shipped JSON Schema files agree on every case.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

_ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$")


class PayloadError(ValueError):
    """A payload does not follow the contract; `field` is the dotted path of the first bad field."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}" if field else problem)
        self.field = field
        self.problem = problem


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
        if not is_number or not math.isfinite(value):
            raise self.fail(key, "a number")
        low = -math.inf if minimum is None else minimum
        high = math.inf if maximum is None else maximum
        if not low <= value <= high:
            bounds = f"in [{minimum}, {maximum}]" if maximum is not None else f">= {minimum}"
            raise self.fail(key, f"a number {bounds}")
        return float(value)

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
