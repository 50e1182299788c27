"""`[web]` and `--web [HOST:]PORT`: the loopback-or-auth rule and every bad value, one line each."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from edgecam.config import load_config
from edgecam.config.web import is_loopback, parse_web_address
from edgecam.errors import ConfigError
from edgecam.web.auth import hash_password
from edgecam.web.respond import PAGES, STATIC
from tests.support.paths import REPO

HASH = hash_password("a long passphrase", n=2**10)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8080", (None, 8080)),
        ("127.0.0.1:9000", ("127.0.0.1", 9000)),
        ("0.0.0.0:80", ("0.0.0.0", 80)),
        ("[::1]:8080", ("::1", 8080)),
        ("camera.local:8080", ("camera.local", 8080)),
    ],
)
def test_web_address_forms(text: str, expected: tuple[str | None, int]) -> None:
    assert parse_web_address(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0", "with a port 1-65535"),
        ("host:", "with a port 1-65535"),
        ("::1:8080", "write an IPv6 address in brackets"),
        ("[::1]8080", "expected [IPV6]:PORT"),
        ("bad host:80", "is not a host name or address"),
    ],
)
def test_bad_web_addresses(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_web_address(text)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.1", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.5", False),
        ("camera.local", False),
    ],
)
def test_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def _problem(tmp_path: Path, toml: str) -> str:
    path = tmp_path / "edgecam.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return str(info.value).removeprefix(f"{path}: ")


@pytest.mark.parametrize(
    ("toml", "problem"),
    [
        # reachable from the network without auth
        (
            "[web]\nenabled = true\nbind = '0.0.0.0'",
            "web: bind = '0.0.0.0' is reachable from other machines, so the page needs a login",
        ),
        (
            "[web]\nenabled = true\nbind = '192.168.1.20'",
            "web: bind = '192.168.1.20' is reachable from other machines",
        ),
        # the password itself where the hash belongs
        ("[web]\npassword_hash = 'hunter2'", "web.password_hash: not a password hash"),
        ("[web]\ntoken = 'short'", "web: token: use at least 16 characters"),
        ("[web]\ntls_cert_file = '/etc/cert.pem'", "web: tls_cert_file and tls_key_file go"),
        (
            f"[web]\npassword_hash = '{HASH}'\npassword_hash_file = '/x'",
            "web: set password_hash or password_hash_file, not both",
        ),
        ("[web]\nport = 70000", "web.port: 70000 is not a valid port (1–65535)"),
        ("[web]\nfps = 0", "web.fps: 0 is out of range (> 0 and ≤ 30)"),
        ("[web]\nbind = 'a b'", "web.bind: 'a b' is not a host name or address"),
        ("[web]\nmax_clients = 0", "web.max_clients: 0 is out of range (1–64)"),
        ("[web]\nportt = 1", "web.portt"),
    ],
)
def test_bad_web_config(tmp_path: Path, toml: str, problem: str) -> None:
    assert _problem(tmp_path, toml).startswith(problem)


def test_network_bind_with_auth_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "edgecam.toml"
    path.write_text(f"[web]\nenabled = true\nbind = '0.0.0.0'\npassword_hash = '{HASH}'\n")
    web = load_config(path).web
    assert web.has_auth and web.url() == "http://<this device's address>:8080/"


def test_off_by_default_and_on_loopback_in_the_example_service_config() -> None:
    assert not load_config(None).web.enabled
    example = load_config(REPO / "systemd" / "edgecam.toml").web
    assert example.enabled and is_loopback(example.bind) and not example.has_auth


@pytest.mark.slow
def test_the_page_ships_in_the_wheel(tmp_path: Path) -> None:
    """The static files are package data: a pip-installed edgecam serves the same page."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(REPO)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [wheel] = tmp_path.glob("edgecam-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    static = {f"edgecam/web/static/{n}" for n in (*STATIC, *PAGES.values())}
    assert static <= names, static - names
