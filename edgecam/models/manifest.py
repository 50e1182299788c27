"""The model manifest: TOML text -> validated, immutable model and label specs.

Pure (no file access): callers hand in the text and the name of the file it came from, so
every error can point at the file, the entry and the field. Unknown keys are rejected because
a misspelt ``treshold`` silently falling back to a default is worse than a refusal.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast
from urllib.parse import urlsplit

from edgecam.errors import ModelError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

Task = Literal["classification", "detection"]
Resize = Literal["crop", "stretch", "letterbox"]
InputDtype = Literal["uint8", "int8", "float32"]

SCHEMA_VERSION = 1
TASKS: tuple[Task, ...] = ("classification", "detection")
RESIZE_POLICIES: tuple[Resize, ...] = ("crop", "stretch", "letterbox")
INPUT_DTYPES: tuple[InputDtype, ...] = ("uint8", "int8", "float32")
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_SHA256 = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")


@dataclass(frozen=True)
class LabelSpec:
    """A label file: one class name per line."""

    name: str
    file: str
    url: str | None = None
    sha256: str | None = None
    size: int | None = None
    description: str = ""
    source: str = ""


@dataclass(frozen=True)
class Paper:
    title: str
    arxiv: str


@dataclass(frozen=True)
class Accuracy:
    """Published accuracy of the model (not measured by edgecam)."""

    metric: str
    value: float
    source: str


@dataclass(frozen=True)
class ModelSpec:
    """Everything edgecam needs to know about a model before opening it.

    label_offset: line of the label file that model class 0 maps to (0 when the label file
    already has a line per output, background included).
    source: the manifest file the entry came from, or the model path for ad-hoc models.
    """

    name: str
    task: Task
    file: str
    input_width: int
    input_height: int
    input_dtype: InputDtype = "uint8"
    pixel_format: Literal["RGB"] = "RGB"
    resize: Resize = "stretch"
    url: str | None = None
    sha256: str | None = None
    size: int | None = None
    labels: LabelSpec | None = None
    label_offset: int = 0
    threshold: float = 0.5
    top_k: int = 5
    description: str = ""
    reference: str = ""
    paper: Paper | None = None
    accuracy: Accuracy | None = None
    origin: str = ""
    licence: str = ""
    checkpoint_url: str | None = None
    build: str | None = None
    primary: bool = False
    source: str = ""

    @property
    def downloadable(self) -> bool:
        return self.url is not None


@dataclass(frozen=True)
class Manifest:
    """All known models and label files, after merging every manifest file in order."""

    models: Mapping[str, ModelSpec] = field(default_factory=dict)
    labels: Mapping[str, LabelSpec] = field(default_factory=dict)
    sources: tuple[str, ...] = ()

    def names(self) -> list[str]:
        return sorted(self.models)


# Field tables: key -> (accepted python types, required, description used in messages).
_Fields = dict[str, tuple[tuple[type, ...], bool, str]]
_TEXT: tuple[tuple[type, ...], bool, str] = ((str,), False, "a string")
_TOP: _Fields = {
    "schema": ((int,), False, "an integer"),
    "labels": ((dict,), False, "a table of label files"),
    "models": ((dict,), False, "a table of models"),
}
_LABEL: _Fields = {
    "file": ((str,), True, "a file name"),
    "url": ((str,), False, "an https:// URL"),
    "sha256": ((str,), False, "64 lowercase hex digits"),
    "size": ((int,), False, "a size in bytes"),
    "description": _TEXT,
}
_INPUT: _Fields = {
    "width": ((int,), True, "pixels (integer)"),
    "height": ((int,), True, "pixels (integer)"),
    "format": ((str,), False, "RGB"),
    "dtype": ((str,), False, " | ".join(INPUT_DTYPES)),
}
_PAPER: _Fields = {
    "title": ((str,), True, "a string"),
    "arxiv": ((str,), True, "an arXiv id such as 1801.04381"),
}
_ACCURACY: _Fields = {
    "metric": ((str,), True, "a string"),
    "value": ((int, float), True, "a number"),
    "source": ((str,), True, "a string"),
}
_MODEL: _Fields = {
    "task": ((str,), True, " | ".join(TASKS)),
    "file": ((str,), True, "a file name"),
    "input": ((dict,), True, "a table {width, height, format, dtype}"),
    "url": ((str,), False, "an https:// URL"),
    "sha256": ((str,), False, "64 lowercase hex digits"),
    "size": ((int,), False, "a size in bytes"),
    "resize": ((str,), False, " | ".join(RESIZE_POLICIES)),
    "labels": ((str,), False, "the name of a [labels.NAME] table"),
    "label_offset": ((int,), False, "an integer >= 0"),
    "threshold": ((int, float), False, "a number in 0..1"),
    "top_k": ((int,), False, "an integer >= 1"),
    "description": _TEXT,
    "reference": _TEXT,
    "paper": ((dict,), False, "a table {title, arxiv}"),
    "accuracy": ((dict,), False, "a table {metric, value, source}"),
    "origin": _TEXT,
    "licence": _TEXT,
    "checkpoint_url": ((str,), False, "a URL"),
    "build": ((str,), False, "build instructions"),
    "primary": ((bool,), False, "true or false"),
}


class _Checker:
    """Checks one table against a field table; errors name file, entry and field."""

    def __init__(self, source: str, where: str) -> None:
        self.source = source
        self.where = where

    def fail(self, key: str, expected: str, got: object) -> ModelError:
        return ModelError(
            f"{self.source}: {self.where}: {key}: expected {expected}, got {got!r}",
            hint="fix the manifest entry",
        )

    def check(self, table: object, fields: _Fields) -> dict[str, Any]:
        if not isinstance(table, dict):
            raise ModelError(f"{self.source}: {self.where}: expected a table, got {table!r}")
        for key in table:
            if key not in fields:
                raise ModelError(
                    f"{self.source}: {self.where}: unknown key {key!r} "
                    f"(allowed: {', '.join(sorted(fields))})",
                    hint="fix the spelling or remove it",
                )
        for key, (types, required, expected) in fields.items():
            if key not in table:
                if required:
                    raise self.fail(key, expected, "nothing (missing)")
                continue
            value = table[key]
            # TOML booleans are ints to Python; never accept one where a number is meant.
            if isinstance(value, bool) and bool not in types:
                raise self.fail(key, expected, value)
            if not isinstance(value, types):
                raise self.fail(key, expected, value)
        return cast(dict[str, Any], table)

    def choice(self, table: Mapping[str, Any], key: str, choices: tuple[str, ...]) -> None:
        if key in table and table[key] not in choices:
            raise self.fail(key, " | ".join(choices), table[key])

    def positive(self, table: Mapping[str, Any], key: str, minimum: int = 1) -> None:
        if key in table and table[key] < minimum:
            raise self.fail(key, f"an integer >= {minimum}", table[key])

    def sha_and_url(self, table: Mapping[str, Any]) -> None:
        sha = table.get("sha256")
        if sha is not None and not _SHA256.fullmatch(sha):
            raise self.fail("sha256", "64 lowercase hex digits", sha)
        url = table.get("url")
        if url is not None and not is_allowed_url(url, loopback_http=True):
            raise self.fail("url", "an https:// URL", url)
        file = table.get("file")
        if file is not None and (not file or "/" in file or "\\" in file or file.startswith(".")):
            raise self.fail("file", "a plain file name (no directories)", file)


def is_loopback_url(url: str) -> bool:
    return urlsplit(url).hostname in LOOPBACK_HOSTS


def is_allowed_url(url: str, *, loopback_http: bool) -> bool:
    """HTTPS everywhere; plain HTTP only to this machine (test servers), and only when asked."""
    scheme = urlsplit(url).scheme
    if scheme == "https":
        return bool(urlsplit(url).hostname)
    return scheme == "http" and loopback_http and is_loopback_url(url)


def _label_spec(name: str, raw: object, source: str) -> LabelSpec:
    chk = _Checker(source, f"[labels.{name}]")
    table = chk.check(raw, _LABEL)
    chk.sha_and_url(table)
    chk.positive(table, "size")
    return LabelSpec(name=name, source=source, **table)


def _input_fields(chk: _Checker, raw: object) -> dict[str, Any]:
    sub = _Checker(chk.source, f"{chk.where} input")
    table = sub.check(raw, _INPUT)
    sub.positive(table, "width")
    sub.positive(table, "height")
    sub.choice(table, "format", ("RGB",))
    sub.choice(table, "dtype", INPUT_DTYPES)
    return {
        "input_width": table["width"],
        "input_height": table["height"],
        "pixel_format": table.get("format", "RGB"),
        "input_dtype": table.get("dtype", "uint8"),
    }


def _model_spec(name: str, raw: object, source: str, labels: Mapping[str, LabelSpec]) -> ModelSpec:
    chk = _Checker(source, f"[models.{name}]")
    table = dict(chk.check(raw, _MODEL))
    chk.choice(table, "task", TASKS)
    chk.choice(table, "resize", RESIZE_POLICIES)
    chk.sha_and_url(table)
    chk.positive(table, "size")
    chk.positive(table, "top_k")
    chk.positive(table, "label_offset", minimum=0)
    if "threshold" in table and not 0.0 <= table["threshold"] <= 1.0:
        raise chk.fail("threshold", "a number in 0..1", table["threshold"])
    if table.get("url") is None and table.get("build") is None:
        raise chk.fail("url", "a download URL, or `build` instructions when none exists", None)
    values: dict[str, Any] = {k: v for k, v in table.items() if k not in ("input", "labels")}
    values.update(_input_fields(chk, table["input"]))
    if "labels" in table:
        if table["labels"] not in labels:
            known = ", ".join(sorted(labels)) or "none"
            raise chk.fail("labels", f"one of the [labels.*] tables ({known})", table["labels"])
        values["labels"] = labels[table["labels"]]
    if "paper" in table:
        values["paper"] = Paper(
            **_Checker(source, f"{chk.where} paper").check(table["paper"], _PAPER)
        )
    if "accuracy" in table:
        acc = _Checker(source, f"{chk.where} accuracy").check(table["accuracy"], _ACCURACY)
        values["accuracy"] = Accuracy(acc["metric"], float(acc["value"]), acc["source"])
    if "threshold" in table:
        values["threshold"] = float(table["threshold"])
    if "resize" not in table:
        values["resize"] = "crop" if table["task"] == "classification" else "stretch"
    return ModelSpec(name=name, source=source, **values)


def parse_manifest(text: str, source: str, base: Manifest | None = None) -> Manifest:
    """Parse one manifest file and merge it over ``base``.

    Entries of this file replace same-named entries of ``base``; its models may use label
    tables defined in ``base`` (so a local file can add a model using the shipped COCO labels).
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ModelError(f"{source}: not valid TOML: {exc}", hint="fix the syntax") from exc
    chk = _Checker(source, "top level")
    chk.check(data, _TOP)
    if data.get("schema", SCHEMA_VERSION) != SCHEMA_VERSION:
        raise chk.fail(
            "schema", f"{SCHEMA_VERSION} (this edgecam's manifest format)", data["schema"]
        )
    base = base or Manifest()
    labels = dict(base.labels)
    for name, raw in data.get("labels", {}).items():
        _check_name(name, "labels", source)
        labels[name] = _label_spec(name, raw, source)
    models = dict(base.models)
    for name, raw in data.get("models", {}).items():
        _check_name(name, "models", source)
        models[name] = _model_spec(name, raw, source, labels)
    return Manifest(models=models, labels=labels, sources=(*base.sources, source))


def _check_name(name: str, section: str, source: str) -> None:
    if not _NAME.fullmatch(name):
        raise ModelError(
            f"{source}: [{section}.{name}]: bad name {name!r}: "
            "expected letters, digits, '_', '.', '-'"
        )
