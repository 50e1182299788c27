"""The config loader: every bad value is rejected with its origin, field path, value and what
is allowed; unknown keys are errors with a suggestion; all problems are reported at once."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from edgecam.config import EdgecamConfig, load_config, merge_overrides, parse_overrides, read_toml
from edgecam.config.zones import ZoneSection
from edgecam.errors import EXIT_USAGE, ConfigError
from edgecam.secrets import MASK, SECRET_KEYS, mask_url_password, masked, secret_values
from tests.support.paths import REPO

EXAMPLE = REPO / "systemd" / "edgecam.toml"


def problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "edgecam.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.exit_code == EXIT_USAGE
    lines = str(info.value).splitlines()
    return lines[1:] if re.match(r"\d+ problems", lines[0]) else lines


# (TOML snippet, the exact problem text after "<file>: ")
BAD_VALUES = [
    # ports: the range is named
    ("[mqtt]\nhost = 'b'\nport = 99999", "mqtt.port: 99999 is not a valid port (1–65535)"),
    ("[mqtt]\nhost = 'b'\nport = 0", "mqtt.port: 0 is not a valid port (1–65535)"),
    # MQTT QoS is a closed set
    ("[mqtt]\nqos = 3", "mqtt.qos: 3 is not a valid MQTT QoS (0, 1 or 2)"),
    # score thresholds live in 0..1
    ("[model]\nthreshold = 1.5", "model.threshold: 1.5 is not a valid score threshold (0.0–1.0)"),
    ("[objects]\nmin_score = -0.1", "objects.min_score: -0.1 is not a valid score threshold (0–1)"),
    # other bounded numbers give their range, open bounds spelled out
    ("[model]\nthreads = 0", "model.threads: 0 is out of range (1–64)"),
    (
        "[pipeline]\nstop_timeout_s = 0",
        "pipeline.stop_timeout_s: 0 is out of range (> 0 and ≤ 300)",
    ),
    ("[source]\ngive_up_s = -5", "source.give_up_s: -5 is out of range (> 0)"),
    # wrong types
    ("[source]\nwidth = 'wide'", "source.width: 'wide' is not a whole number"),
    ("[source]\nfps = 'fast'", "source.fps: 'fast' is not a number"),
    ("[output]\nevery_frame = 3", "output.every_frame: 3 is not true or false"),
    ("[model]\nname = 5", "model.name: 5 is not text (quote it in TOML)"),
    ("[model]\nlabels = [1]", "model.labels[0]: 1 is not text (quote it in TOML)"),
    ("mqtt = 5", "mqtt: 5 is not a table"),
    # paths: wrong type, and relative where only absolute makes sense under systemd
    ("[snapshots]\ndir = 5", "snapshots.dir: 5 is not a file system path (text)"),
    (
        "[service]\nstate_dir = 'state'",
        "service.state_dir: 'state' is not an absolute path (e.g. /var/lib/edgecam)",
    ),
    # closed sets list the choices and suggest the nearest
    (
        "[model]\nruntime = 'litrt'",
        "model.runtime: 'litrt' is not one of 'auto', 'litert' or 'tflite' "
        "(did you mean 'litert'?)",
    ),
    (
        "[logging]\nformat = 'json'",
        "logging.format: 'json' is not one of 'auto', 'journald' or 'plain'",
    ),
    # nested tables and arrays of tables keep their full path
    (
        "[[zones]]\nname = 'door'\npoints = [[0.1, 0.1], [0.9, 0.1], [0.5, 'x']]",
        "zones[0].points[2][1]: 'x' is not a number",
    ),
    (
        "[objects.filters.person]\nmin_area = 2",
        "objects.filters.person.min_area: 2 is out of range (0–1)",
    ),
    # lengths
    (
        "[[zones]]\nname = 'door'\npoints = [[0.1, 0.1], [0.9, 0.1]]",
        "zones[0].points: [[0.1, 0.1], [0.9, 0.1]] has 2 items, at least 3 needed",
    ),
    # cross-field rules of a section name the section
    (
        "[mqtt]\nurl = 'mqtt://b'\nhost = 'c'",
        "mqtt: set either url or host/port, not both",
    ),
    # the stop budget spans two sections
    (
        "[pipeline]\nstop_timeout_s = 30",
        "pipeline.stop_timeout_s (30) must be below service.stop_deadline_s (20): "
        "the sinks need time to flush after the pipeline stops",
    ),
]


@pytest.mark.parametrize(("toml", "expected"), BAD_VALUES)
def test_bad_value_is_rejected_with_path_value_and_allowed(
    tmp_path: Path, toml: str, expected: str
) -> None:
    assert problems(tmp_path, toml) == [f"{tmp_path / 'edgecam.toml'}: {expected}"]


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        # a misspelt section
        ("[mqqt]\nhost = 'b'", "mqqt: unknown section (did you mean 'mqtt'?); allowed: model,"),
        # a misspelt key
        ("[mqtt]\nprot = 1", "mqtt.prot: unknown key (did you mean 'port'?); allowed: url,"),
        # deep inside a per-label table
        ("[objects.filters.car]\nmin_scor = 0.5", "objects.filters.car.min_scor: unknown key"),
        # nothing close: no guess, but the list of allowed keys
        ("[service]\nzzz = 1", "service.zzz: unknown key; allowed: watchdog, stop_deadline_s"),
    ],
)
def test_unknown_keys_are_errors_with_a_suggestion(
    tmp_path: Path, toml: str, expected: str
) -> None:
    [line] = problems(tmp_path, toml)
    assert expected in line


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    lines = problems(
        tmp_path,
        "[mqtt]\nhost = 'b'\nport = 99999\nqos = 7\n"
        "[model]\nthreshold = 2\n[sourc]\nspec = '0'\n[logging]\nlevel = 'loud'\n",
    )
    paths = [line.split(": ")[1] for line in lines]
    assert sorted(paths) == ["logging.level", "model.threshold", "mqtt.port", "mqtt.qos", "sourc"]
    assert all(line.startswith(str(tmp_path / "edgecam.toml")) for line in lines)


def test_header_counts_the_problems(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[model]\nthreads = 0\ntop_k = 0\n")
    with pytest.raises(ConfigError, match=r"^2 problems in the config:\n"):
        load_config(path)


def test_overrides_are_blamed_on_the_command_line(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[model]\nthreads = 0\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, parse_overrides(["mqtt.port=70000", "mqtt.host=b"]))
    text = str(info.value)
    assert f"{path}: model.threads: 0 is out of range" in text
    assert "command line: mqtt.port: 70000 is not a valid port (1–65535)" in text


def test_secret_values_never_appear_in_errors(tmp_path: Path) -> None:
    [line] = problems(tmp_path, "[mqtt]\nhost = 'b'\nusername = 'u'\npassword = 12345678")
    assert "12345678" not in line
    assert f"mqtt.password: {MASK} is not text" in line


def test_url_passwords_are_masked_in_errors(tmp_path: Path) -> None:
    [line] = problems(
        tmp_path, "[source]\nspec = 'rtsp://admin:hunter2@cam/x'\nfps = 'rtsp://admin:hunter2@x'"
    )
    assert "hunter2" not in line
    assert "'rtsp://admin:********@x' is not a number" in line


def test_example_config_is_valid_and_service_oriented() -> None:
    config = load_config(EXAMPLE)
    assert config.output.jsonl == ""  # stdout is the journal under systemd
    assert config.mqtt.enabled
    assert config.pipeline.stop_timeout_s < config.service.stop_deadline_s


def _fields(model: type[BaseModel], prefix: str) -> list[tuple[str, str]]:
    out = []
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            out += _fields(annotation, f"{prefix}{name}.")
        else:
            out.append((prefix.rstrip("."), name))
    return out


def test_example_config_mentions_every_section_and_key() -> None:
    """The example documents the whole schema: a new field must be added to it."""
    text = EXAMPLE.read_text()
    sections: dict[str, str] = {}
    current = ""
    for line in text.splitlines():
        header = re.match(r"^#? ?\[\[?([a-z_.]+)\]\]?", line)
        if header:
            current = header.group(1)
            current = "objects.filters" if current.startswith("objects.filters") else current
            continue
        sections[current] = sections.get(current, "") + line + "\n"
    missing = []
    for section, key in _fields(EdgecamConfig, ""):
        if (section, key) in (("", "zones"), ("objects", "filters")):
            continue  # tables of tables, shown as commented examples below
        if not re.search(rf"^#? ?{key} = ", sections.get(section, ""), re.M):
            missing.append(f"{section}.{key}")
    zone_body, filters_body = sections.get("zones", ""), sections.get("objects.filters", "")
    missing += [f"zones.{k}" for k in ZoneSection.model_fields if f"# {k} =" not in zone_body]
    assert "# min_area =" in filters_body
    assert missing == []


def test_empty_file_gives_all_defaults(tmp_path: Path) -> None:
    path = tmp_path / "empty.toml"
    path.write_text("")
    assert load_config(path) == load_config(None)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # TOML syntax errors carry the line
        ("[mqtt\nhost = 1", r"not valid TOML: .*line 1"),
        ("a = 1\na = 2", r"not valid TOML"),
    ],
)
def test_unreadable_toml(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        read_toml(path)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        # TOML value syntax
        ("mqtt.port=1884", 1884),
        ("model.threshold=0.6", 0.6),
        ("source.loop=true", True),
        ("model.labels=['person', 'car']", ["person", "car"]),
        # bare words are text
        ("mqtt.host=broker.local", "broker.local"),
        # text fields keep the raw text even when it looks like a number
        ("output.device_id=007", "007"),
        ("source.spec=0", "0"),
        # quoted TOML strings are unquoted
        ("output.device_id='cam 1'", "cam 1"),
        # '=' inside the value is kept
        ("mqtt.username=a=b", "a=b"),
    ],
)
def test_parse_overrides(item: str, expected: object) -> None:
    [(key, value)] = parse_overrides([item]).items()
    assert key == item.split("=", 1)[0]
    assert value == expected


@pytest.mark.parametrize("item", ["mqtt.port", "port=1", ".port=1", "mqtt.=1"])
def test_malformed_overrides(item: str) -> None:
    with pytest.raises(ConfigError, match=r"expected SECTION\.KEY=VALUE"):
        parse_overrides([item])


def test_overrides_win_over_the_file_and_reach_nested_tables(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[mqtt]\nhost = 'a'\nport = 1\n[objects.filters.person]\nmin_area = 0.1\n")
    config = load_config(
        path,
        {
            **parse_overrides(["mqtt.port=2", "objects.filters.person.min_area=0.2"]),
            "model.threads": None,  # None means "flag not given"
        },
    )
    assert (config.mqtt.host, config.mqtt.port) == ("a", 2)
    assert config.objects.filters["person"].min_area == 0.2
    assert config.model.threads is None


def test_override_through_a_non_table_is_refused() -> None:
    with pytest.raises(ConfigError, match="mqtt is 5, not a table"):
        merge_overrides({"mqtt": 5}, {"mqtt.port": 1})


def test_masked_dict_hides_passwords_and_url_credentials(tmp_path: Path) -> None:
    path = tmp_path / "edgecam.toml"  # from a config file: the command line refuses secrets
    path.write_text(
        "[mqtt]\nhost = 'b'\nusername = 'u'\npassword = 'topsecret'\n"
        "[source]\nspec = 'rtsp://admin:hunter2@cam/live'\n"
    )
    config = load_config(path)
    data = masked(config)
    assert data["mqtt"]["password"] == MASK
    assert data["source"]["spec"] == "rtsp://admin:********@cam/live"
    assert "topsecret" not in repr(data)
    assert set(secret_values(config)) == {"topsecret", "hunter2"}


def test_mask_url_password_leaves_other_text_alone() -> None:
    assert mask_url_password("rtsp://cam/live") == "rtsp://cam/live"
    assert mask_url_password("mqtt://user@broker") == "mqtt://user@broker"
    assert mask_url_password("http://a:b@h/x and https://c:d@i") == (
        "http://a:********@h/x and https://c:********@i"
    )


# ---- secrets never on the command line (issue 14, item 4) ---------------------------------


@pytest.mark.parametrize("name", sorted(SECRET_KEYS))
@pytest.mark.parametrize("section", ["mqtt", "homeassistant", "source"])
def test_set_refuses_every_secret_key(section: str, name: str) -> None:
    """argv is world-readable (`ps`, /proc/PID/cmdline), the same reason a password in the
    URL is refused; the key list is edgecam.secrets.SECRET_KEYS, the one rule."""
    with pytest.raises(ConfigError) as info:
        parse_overrides([f"{section}.{name}=hunter2"])
    text = str(info.value)
    assert text.startswith(f"--set {section}.{name}: a secret on the command line is visible")
    assert "hunter2" not in text


def test_set_password_says_where_it_goes_instead() -> None:
    with pytest.raises(ConfigError, match=r"use mqtt\.password_file or mqtt\.password_env$"):
        parse_overrides(["mqtt.password='p'"])
    with pytest.raises(ConfigError, match=r"--set mqtt\.x\.password: a secret"):
        parse_overrides(["mqtt.x={password = 'p'}"])  # hidden in an inline table
    assert parse_overrides(["mqtt.password_file=/etc/edgecam/pw"]) == {
        "mqtt.password_file": "/etc/edgecam/pw"
    }


# ---- the config file itself: one line, exit 2, never a traceback (issue 14, item 5) -------


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        # Latin-1 from an old editor
        (b"[mqtt]\nhost = 'caf\xe9'\n", "not UTF-8 text (byte 0xe9 at offset 18)"),
        # tomllib recurses: RecursionError
        (b"a = " + b"[" * 5000 + b"]" * 5000, "not valid TOML: arrays or tables nested too deeply"),
        # int() refuses > 4300 decimal digits with a plain ValueError
        (b"[model]\nthreads = " + b"9" * 5000, "not valid TOML: a number literal is too long"),
        # hex is not limited by int(), but str() of it is; TOML integers are 64-bit
        (b"[model]\nthreads = 0x" + b"f" * 5000, "not valid TOML: an integer outside 64 bits"),
    ],
)
def test_unreadable_config_files_are_one_config_error(
    tmp_path: Path, content: bytes, problem: str
) -> None:
    path = tmp_path / "edgecam.toml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as info:
        read_toml(path)
    assert str(info.value).startswith(f"{path}: {problem}")
    assert "\n" not in str(info.value)


def test_a_utf8_bom_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "edgecam.toml"
    path.write_bytes(b"\xef\xbb\xbf[mqtt]\nhost = 'b'\n")
    assert read_toml(path) == {"mqtt": {"host": "b"}}


@pytest.mark.timeout(20)
def test_config_that_is_not_a_regular_file_is_refused_without_reading(tmp_path: Path) -> None:
    """A FIFO would block open() until a writer appears; /dev/zero never ends."""
    fifo = tmp_path / "edgecam.toml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match=r"named pipe \(FIFO\), not a regular file"):
        read_toml(fifo)
    with pytest.raises(ConfigError, match="is a character device, not a regular file"):
        read_toml(Path("/dev/zero"))
    big = tmp_path / "big.toml"
    big.write_bytes(b"# " + b"x" * (2 << 20))
    with pytest.raises(ConfigError, match=r"larger than \d+ bytes"):
        read_toml(big)
