"""[mqtt], [outbox], [stats], [homeassistant] and `--mqtt URL`: every bad value is refused at load
with the field path and the value, all at once; from the CLI that is exit status 2, no traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edgecam.config import load_config
from edgecam.config.homeassistant import HomeAssistantSection
from edgecam.config.mqtt import (
    Endpoint,
    MqttSection,
    resolve_password,
    validate_mqtt,
    with_url,
)
from edgecam.errors import ConfigError
from tests.support.paths import REPO


def test_defaults_leave_mqtt_off_with_qos1_and_no_empty_frames() -> None:
    cfg = MqttSection()
    assert not cfg.enabled
    assert (cfg.qos, cfg.topic_prefix, cfg.publish_empty_frames) == (1, "edgecam", False)
    with pytest.raises(ConfigError, match="no broker configured"):
        cfg.endpoints()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://broker.local", Endpoint("broker.local", 1883, False, None)),
        ("mqtts://broker.local", Endpoint("broker.local", 8883, True, None)),  # TLS default port
        ("mqtt://cam@10.0.0.2:1884", Endpoint("10.0.0.2", 1884, False, "cam")),
        ("mqtts://[::1]:8884", Endpoint("::1", 8884, True, None)),  # IPv6 literal
        ("localhost:1885", Endpoint("localhost", 1885, False, None)),  # bare host:port
        ("MQTT://h", Endpoint("h", 1883, False, None)),  # scheme is case-insensitive
        ("mqtt://[fe80::1%eth0]:1", Endpoint("fe80::1%eth0", 1, False, None)),  # zone index
    ],
)
def test_url_forms(url: str, expected: Endpoint) -> None:
    assert validate_mqtt(with_url({}, url), f"--mqtt {url}").endpoints() == (expected,)


def test_a_list_of_urls_names_the_nodes_of_one_broker_in_order() -> None:
    nodes = (Endpoint("a", 1883, False, "cam"), Endpoint("b", 1884, False, "cam"))
    as_list = validate_mqtt({"url": ["mqtt://cam@a", "mqtt://cam@b:1884"]}, "f.toml")
    as_flag = validate_mqtt(with_url({}, "mqtt://cam@a, mqtt://cam@b:1884"), "--mqtt")
    shared_user = validate_mqtt({"url": "mqtt://a,mqtt://b:1884", "username": "cam"}, "f.toml")
    assert as_list.endpoints() == as_flag.endpoints() == shared_user.endpoints() == nodes
    assert as_flag.url == ("mqtt://cam@a", "mqtt://cam@b:1884")
    assert validate_mqtt(with_url({}, "mqtt://a"), "--mqtt").url == "mqtt://a"  # one stays one


@pytest.mark.parametrize(("given", "kept"), [(None, "auto"), ("3.1.1", "3.1.1"), (5, "5")])
def test_protocol_values(given: object, kept: str) -> None:
    table = {"host": "h"} if given is None else {"host": "h", "protocol": given}
    assert validate_mqtt(table, "f.toml").protocol == kept


BAD_FIELDS = [
    # (raw [mqtt] table, expected "mqtt.<path>: <message>" fragment)
    ({"host": "h", "port": 99999}, "mqtt.port: 99999 is not a valid port (1–65535)"),
    ({"host": "h", "port": 0}, "mqtt.port: 0 is not a valid port (1–65535)"),
    ({"host": "h", "port": "http"}, "mqtt.port: 'http' is not a valid port (1–65535)"),
    ({"url": "mqtt://h:99999"}, "mqtt.url: 99999 is not a valid port (1–65535)"),
    ({"url": "http://h"}, "mqtt.url: unknown scheme 'http'"),
    ({"url": "mqtt://u:hunter2@h"}, "a password in the URL is visible in `ps`"),
    ({"url": "mqtt://h/topic"}, "expected nothing after host:port"),
    ({"url": "mqtt://:1883"}, "'' is not a host name"),
    # IPv6 brackets: unclosed, junk after them, not an address inside
    ({"url": "mqtt://[::1"}, "unclosed '[' around an IPv6 address"),
    ({"url": "mqtt://[::1]1883"}, "unexpected '1883' after the IPv6 address"),
    ({"url": "mqtts://[broker]:8883"}, "'broker' in brackets is not an IPv6 address"),
    # int() would take these as 1, 10 and 1; a port is ASCII digits
    ({"url": "mqtt://h:+1"}, "'+1' is not a valid port"),
    ({"url": "mqtt://h:1_0"}, "'1_0' is not a valid port"),
    ({"url": "mqtt://h:\u0661"}, "is not a valid port"),
    # control characters and spaces are no part of a host name
    ({"url": "mqtt://bro\x1bker"}, "is not a host name or address"),
    ({"host": "bro ker"}, "mqtt.host: 'bro ker' is not a host name or address"),
    ({"qos": 3}, "mqtt.qos: 3 is not a valid MQTT QoS (0, 1 or 2)"),
    ({"qos": "one"}, "mqtt.qos: 'one' is not a valid MQTT QoS"),
    ({"topic_prefix": "cams/+"}, "mqtt.topic_prefix: 'cams/+' is not a topic prefix"),
    ({"topic_prefix": "/edgecam"}, "mqtt.topic_prefix: '/edgecam' is not a topic prefix"),
    (
        {"device_id": "front door"},
        "mqtt.device_id: 'front door' is not a device id: one MQTT topic level",
    ),
    ({"keepalive_s": 1}, "mqtt.keepalive_s: 1 is out of range (5–3600)"),
    ({"max_inflight": 0}, "mqtt.max_inflight: 0 is out of range"),
    ({"password_env": "1BAD"}, "mqtt.password_env: '1BAD' is not an environment"),
    ({"hostname": "h"}, "mqtt.hostname: unknown key (did you mean 'host'?)"),  # typo
    ({"url": "mqtt://h", "host": "h"}, "set either url or host/port, not both"),
    ({"host": "h", "password_file": "/x"}, "password_file needs a username"),
    (
        {"host": "h", "username": "u", "password": "p", "password_env": "P"},
        "set only one of password, password_env",
    ),
    ({"host": "h", "ca_file": "/ca.crt"}, "TLS options are set but TLS is off"),
    ({"host": "h", "tls": True, "key_file": "/k"}, "key_file needs cert_file"),
    ({"reconnect_min_s": 10, "reconnect_max_s": 1}, "reconnect_min_s must be <= reconnect_max_s"),
    # a list of nodes: each by the rules above, and one broker's worth of settings
    (
        {"url": ["mqtt://a", "mqtt://b:0"]},
        "mqtt.url: node 2 of 2: 'mqtt://b:0': 0 is not a valid port (1–65535)",
    ),
    ({"url": "mqtt://a,"}, "mqtt.url: node 2 of 2: '' is not a host name"),  # stray comma
    ({"url": "mqtt://a,mqtts://b"}, "mixes mqtt:// and mqtts:// nodes"),
    ({"url": ["mqtt://a", "mqtt://A:1883"]}, "the same host:port is listed twice"),
    ({"url": ["mqtt://u@a", "mqtt://v@b"]}, "different user names"),
    ({"url": []}, "mqtt.url: an empty list: give at least one broker URL"),
    ({"url": ["mqtt://a", 7]}, "mqtt.url: 7 is not a URL"),
    (
        {"url": ["mqtt://a", "mqtt://u:hunter2@b"]},
        "node 2 of 2: 'mqtt://u:********@b': a password in the URL is visible in `ps`",
    ),
    ({"protocol": "4"}, "mqtt.protocol: '4' is not one of 'auto', '5' or '3.1.1'"),
    (
        {"publish_detections": False, "publish_empty_frames": True},
        "publish_empty_frames needs publish_detections",
    ),
]


@pytest.mark.parametrize(("table", "fragment"), BAD_FIELDS)
def test_bad_mqtt_values_name_field_and_value(table: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate_mqtt(table, "edgecam.toml")
    assert fragment in str(info.value)
    assert str(info.value).startswith("edgecam.toml: mqtt")


def test_all_errors_are_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        validate_mqtt({"host": "h", "port": 0, "qos": 5, "topic_prefix": "#"}, "f.toml")
    lines = str(info.value).splitlines()
    assert lines[0] == "3 problems in the config:"
    assert [line.split(":")[1].strip() for line in lines[1:]] == [
        "mqtt.port",
        "mqtt.qos",
        "mqtt.topic_prefix",
    ]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"outbox.max_messages": 0}, "outbox.max_messages: 0 is out of range (≥ 1)"),
        ({"outbox.max_bytes": 10}, "outbox.max_bytes: 10 is out of range (≥ 4096)"),
        ({"outbox.dir": "/tmp"}, "outbox.dir: unknown key"),
        ({"stats.interval_s": 0}, "stats.interval_s: 0 is out of range"),
        (
            {"homeassistant.discovery_prefix": "ha/#"},
            "homeassistant.discovery_prefix: 'ha/#' is not a topic prefix",
        ),
        ({"homeassistant.enabled": "maybe"}, "homeassistant.enabled: 'maybe' is not true or false"),
        ({"mqtt.port": 99999, "mqtt.host": "h"}, "mqtt.port: 99999 is not a valid port (1–65535)"),
    ],
)
def test_sections_in_the_whole_config_are_strict(override: dict[str, Any], message: str) -> None:
    """Through the project's config loader, as `--set` and the TOML file reach them."""
    with pytest.raises(ConfigError) as info:
        load_config(None, override)
    assert f"command line: {message}" in str(info.value)


def test_config_file_sections_load(tmp_path: Path) -> None:
    conf = tmp_path / "edgecam.toml"
    conf.write_text(
        '[mqtt]\nurl = "mqtts://cam@broker:8884"\npassword_file = "/etc/edgecam/pw"\nqos = 2\n'
        "[outbox]\nmax_messages = 500\n[stats]\ninterval_s = 30\n"
        '[homeassistant]\nenabled = true\nlabels = ["person", "car"]\n'
    )
    cfg = load_config(conf)
    assert cfg.mqtt.endpoints() == (Endpoint("broker", 8884, True, "cam"),)
    assert (cfg.mqtt.qos, cfg.outbox.max_messages, cfg.stats.interval_s) == (2, 500, 30.0)
    assert cfg.homeassistant.enabled and cfg.homeassistant.labels == ("person", "car")


def test_homeassistant_labels_accept_a_comma_string() -> None:
    assert HomeAssistantSection(labels="person, car").labels == ("person", "car")


def test_url_override_keeps_credentials_and_prefix_of_the_file() -> None:
    base = validate_mqtt(
        {
            "host": "old",
            "port": 1999,
            "username": "cam",
            "password_env": "PW",
            "topic_prefix": "site/a",
        },
        "f.toml",
    )
    url = "mqtt://new:1884"
    cfg = validate_mqtt(with_url(base.model_dump(exclude_unset=True), url), f"--mqtt {url}")
    assert cfg.endpoints() == (Endpoint("new", 1884, False, "cam"),)
    assert (cfg.password_env, cfg.topic_prefix) == ("PW", "site/a")


def test_url_override_error_names_the_flag() -> None:
    with pytest.raises(ConfigError, match=r"^--mqtt mqtt://h:0: mqtt.url: 0 is not a valid port"):
        validate_mqtt(with_url({}, "mqtt://h:0"), "--mqtt mqtt://h:0")


def test_password_sources(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    assert (
        resolve_password(
            validate_mqtt({"host": "h", "username": "u", "password_file": str(secret)}, "f")
        )
        == "from-file"
    )  # trailing newline stripped
    env_cfg = validate_mqtt({"host": "h", "username": "u", "password_env": "EDGECAM_PW"}, "f")
    assert resolve_password(env_cfg, {"EDGECAM_PW": "from-env"}) == "from-env"
    with pytest.raises(ConfigError, match="environment variable EDGECAM_PW is not set"):
        resolve_password(env_cfg, {})
    missing = validate_mqtt(
        {"host": "h", "username": "u", "password_file": str(tmp_path / "no")}, "f"
    )
    with pytest.raises(ConfigError, match=r"mqtt.password_file: cannot read .*no"):
        resolve_password(missing)


def test_literal_password_is_masked_in_repr_and_dumps() -> None:
    cfg = validate_mqtt({"host": "h", "username": "u", "password": "hunter2"}, "f")
    assert "hunter2" not in repr(cfg)
    assert "hunter2" not in cfg.model_dump_json()
    assert resolve_password(cfg) == "hunter2"


def _edgecam(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgecam", *args],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--mqtt", "mqtt://127.0.0.1:99999"], "mqtt.url: 99999 is not a valid port (1–65535)"),
        (["--mqtt", "mqtt://127.0.0.1:0"], "mqtt.url: 0 is not a valid port (1–65535)"),
        (["--mqtt", "ftp://127.0.0.1"], "unknown scheme 'ftp'"),
        (
            ["--mqtt", "mqtt://127.0.0.1,mqtt://127.0.0.1:0"],
            "mqtt.url: node 2 of 2: 'mqtt://127.0.0.1:0': 0 is not a valid port",
        ),
        (["--mqtt", "mqtt://127.0.0.1", "--kinds", "video"], "--kinds 'video'"),
    ],
)
def test_cli_bad_values_exit_2_without_traceback(args: list[str], fragment: str) -> None:
    proc = _edgecam("watch", *args, "--timeout", "1")
    assert proc.returncode == 2, proc.stderr
    assert fragment in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_bad_config_file_values_exit_2(tmp_path: Path) -> None:
    conf = tmp_path / "edgecam.toml"
    conf.write_text('[mqtt]\nhost = "127.0.0.1"\nport = 99999\nqos = 7\n')
    proc = _edgecam("watch", "--config", str(conf), "--timeout", "1")
    assert proc.returncode == 2, proc.stderr
    assert f"{conf}: mqtt.port: 99999 is not a valid port (1–65535)" in proc.stderr
    assert f"{conf}: mqtt.qos: 7 is not a valid MQTT QoS (0, 1 or 2)" in proc.stderr
