"""Property-based fuzzing of the subscriber side: no bytes on any topic may crash it.

`parse_message(topic, payload)` must return a Message or raise PayloadError, and nothing else,
for every topic x payload: random bytes, producer messages with one field replaced by a
hostile value, extreme nesting, payloads around the size limit, number literals that `json`
and `int()` choke on (huge integers, NaN/Infinity, -0, exponents), and unicode that terminals
and UTF-8 writers choke on (lone surrogates, bidi overrides, NUL, ANSI escapes).
`edgecam watch`'s printer is driven with the same inputs: it must never raise, and what it
writes (table, JSON lines, stderr notes) must be printable UTF-8 text.

Runs derandomized with no example database, so CI sees the same examples on every run; the
example counts are in FUZZ_EXAMPLES (a few thousand in total, seconds on a laptop).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgecam.commands.watch import Printer
from edgecam.schema import MAX_DEPTH, MAX_JSON_BYTES, Message, PayloadError, parse_message
from tests.schema.test_parse import (
    classification_payload,
    detections_payload,
    event_payloads,
    stats_payload,
)

#: Examples per property; the total across this module is what the issue's closing note quotes.
FUZZ_EXAMPLES = {
    "bytes": 1500,
    "mutated": 2000,
    "numbers": 600,
    "nesting": 300,
    "unicode": 600,
    "sizes": 40,
    "topics": 800,
}


def fuzz(name: str) -> settings:
    return settings(
        max_examples=FUZZ_EXAMPLES[name],
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


VALID: dict[str, dict[str, Any]] = {
    "detections": detections_payload(),
    "classification": classification_payload(),
    "stats": stats_payload(),
    "events": event_payloads()[0],
}
JSON_TOPICS = [f"edgecam/cam1/{kind}" for kind in VALID]
TOPICS = [
    *JSON_TOPICS,
    "edgecam/cam1/status",
    "edgecam/cam1/count/person",
    "edgecam/cam1/snapshot/person",
]

# Every character class that has broken a terminal or a UTF-8 writer somewhere.
NASTY_TEXT = [
    "\x1b[31mred\x1b[0m",  # ANSI colour
    "\x1b]0;pwned\x07",  # OSC: set the terminal title
    "\x1b[2J\x1b[H",  # clear screen
    "\u202eevil\u202c",  # right-to-left override
    "\u200f\u2066",  # RTL mark, isolate
    "\x00",
    "\ud800",  # lone high surrogate
    "\udfff",
    "\r\n\t\x7f\x85",
    "\u2028\u2029",  # line / paragraph separators
    "Ω≈ç√∫˜µ≤≥÷ 猫 🐈 👩‍👩‍👧",
    "",
    "x" * 5000,
]
any_text = st.one_of(
    st.sampled_from(NASTY_TEXT),
    st.text(st.characters(codec=None, exclude_categories=()), max_size=40),
)
number_literals = st.one_of(
    st.sampled_from(
        [
            "NaN",
            "Infinity",
            "-Infinity",
            "-0",
            "-0.0",
            "0e0",
            "1e400",
            "-1e400",
            "1e-400",
            "1E+308",
            "2.5e-1",
            "9" * 21,
            "-" + "9" * 21,
            "9" * 5000,
            "1" + "0" * 4300,
            "0." + "0" * 5000 + "1",
            "1" * 100_000,
        ]
    ),
    st.integers().map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=1, max_value=20_000).map(lambda n: "7" * n),
)
json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(10**30), max_value=10**30),
        st.floats(allow_nan=True, allow_infinity=True),
        any_text,
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(any_text, inner, max_size=4)
    ),
    max_leaves=12,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path into a decoded JSON document (dict keys and list indexes)."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


def _replace(doc: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    node: Any = out
    for part in path[:-1]:
        node = node[part]
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return out


_DELETE = object()


def _encode(doc: Any, raw_unicode: bool) -> bytes:
    """JSON text with NaN/Infinity literals allowed; raw_unicode writes lone surrogates as
    (invalid) UTF-8 bytes instead of \\ud800 escapes."""
    text = json.dumps(doc, ensure_ascii=not raw_unicode, allow_nan=True)
    return text.encode("utf-8", "surrogatepass")


def check_parse(topic: str, payload: bytes) -> Message | None:
    """The property: a Message or a PayloadError, nothing else; then watch prints it safely."""
    try:
        message = parse_message(topic, payload)
    except PayloadError:
        message = None
    check_watch(topic, payload)
    return message


def check_watch(topic: str, payload: bytes) -> None:
    for as_json in (False, True):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(err):
            printer = Printer(out, as_json=as_json)
            printer.show(topic, payload)
            printer.show(None, payload)  # a topic that was not UTF-8
            printer.summary(overflow=1)
        for text in (out.getvalue(), err.getvalue()):
            text.encode("utf-8")  # no lone surrogate reaches the terminal
            for line in text.splitlines():
                assert line.isprintable(), line


@fuzz("bytes")
@given(topic=st.sampled_from(TOPICS), payload=st.binary(max_size=4096))
def test_random_bytes(topic: str, payload: bytes) -> None:
    check_parse(topic, payload)


@fuzz("mutated")
@given(
    kind=st.sampled_from(sorted(VALID)),
    data=st.data(),
    value=st.one_of(json_values, st.just(_DELETE)),
    raw_unicode=st.booleans(),
)
def test_valid_messages_with_one_field_mutated(
    kind: str, data: st.DataObject, value: Any, raw_unicode: bool
) -> None:
    doc = VALID[kind]
    path = data.draw(st.sampled_from(_paths(doc)), label="path")
    check_parse(f"edgecam/cam1/{kind}", _encode(_replace(doc, path, value), raw_unicode))


@fuzz("numbers")
@given(kind=st.sampled_from(sorted(VALID)), data=st.data(), literal=number_literals)
def test_number_literals_in_every_numeric_field(
    kind: str, data: st.DataObject, literal: str
) -> None:
    doc = VALID[kind]
    numeric = [p for p in _paths(doc) if isinstance(_get(doc, p), int | float)]
    path = data.draw(st.sampled_from(numeric), label="path")
    marker = "__number_goes_here__"
    text = json.dumps(_replace(doc, path, marker)).replace(f'"{marker}"', literal)
    check_parse(f"edgecam/cam1/{kind}", text.encode())
    check_parse("edgecam/cam1/count/person", literal.encode())


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        doc = doc[part]
    return doc


@fuzz("nesting")
@given(
    topic=st.sampled_from(JSON_TOPICS),
    depth=st.one_of(st.integers(1, 2 * MAX_DEPTH), st.integers(1, 200_000)),
    opener=st.sampled_from(["[", '{"a":', '{"detections":[', '["\\"[",']),
    closed=st.booleans(),
)
def test_extreme_nesting(topic: str, depth: int, opener: str, closed: bool) -> None:
    closer = {"[": "]", '{"a":': "}", '{"detections":[': "]}", '["\\"[",': "]"}[opener]
    text = opener * depth + "1" + (closer * depth if closed else "")
    if len(text) <= MAX_JSON_BYTES:
        check_parse(topic, text.encode())
    inner = min(depth, 900)  # deep, yet within what json.dumps itself can write
    deep = VALID["detections"] | {"timings_ms": json.loads("[" * inner + "]" * inner)}
    check_parse("edgecam/cam1/detections", json.dumps(deep).encode())


@fuzz("unicode")
@given(
    topic=st.sampled_from(TOPICS),
    field=st.sampled_from(["label", "device_id", "model", "source", "run_id"]),
    text=any_text,
    raw_unicode=st.booleans(),
)
def test_unicode_in_text_fields(topic: str, field: str, text: str, raw_unicode: bool) -> None:
    doc = VALID["detections"]
    doc = _replace(doc, ("detections", 0, "label") if field == "label" else (field,), text)
    message = check_parse("edgecam/cam1/detections", _encode(doc, raw_unicode))
    if message is not None:  # accepted text arrives unchanged and is valid Unicode
        encoded = json.dumps(doc, ensure_ascii=False).encode("utf-8", "surrogatepass")
        encoded.decode("utf-8")
    check_parse(topic, text.encode("utf-8", "surrogatepass"))


@fuzz("sizes")
@given(
    topic=st.sampled_from(TOPICS),
    size=st.sampled_from([0, 1, MAX_JSON_BYTES - 1, MAX_JSON_BYTES, MAX_JSON_BYTES + 1]),
    filler=st.sampled_from([b" ", b"[", b"\xff", b"9", b'"']),
)
def test_payload_sizes_around_the_limit(topic: str, size: int, filler: bytes) -> None:
    check_parse(topic, filler * size)
    padded = json.dumps(VALID["detections"]).encode()
    padded = padded[:-1] + b" " * max(0, size - len(padded)) + b"}"
    message = check_parse("edgecam/cam1/detections", padded)
    assert (message is not None) == (len(padded) <= MAX_JSON_BYTES)


@fuzz("topics")
@given(
    topic=st.one_of(
        any_text,
        st.builds(lambda d: f"edgecam/{d}/detections", any_text),
        st.builds(lambda label: f"edgecam/cam1/count/{label}", any_text),
        st.lists(st.sampled_from(["edgecam", "", "+", "#", "count", "status"]), max_size=6).map(
            "/".join
        ),
    ),
    payload=st.sampled_from([b"online", b"3", json.dumps(VALID["detections"]).encode(), b""]),
)
def test_any_topic(topic: str, payload: bytes) -> None:
    check_parse(topic, payload)


def test_valid_messages_still_parse() -> None:
    """The bounds reject nothing a producer sends: every kind, every topic."""
    for kind, doc in VALID.items():
        assert check_parse(f"edgecam/cam1/{kind}", json.dumps(doc).encode()) is not None
    assert check_parse("edgecam/cam1/count/person", b"18446744073709551615"[:18]) is not None
    assert check_parse("edgecam/cam1/status", b"online") is not None
