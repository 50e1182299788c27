"""Login, tokens and CSRF against the real server; the loopback-or-auth rule at start-up.

A browser logs in with the password (or the token) through a JSON POST that must carry the
double-submit CSRF token, gets an HttpOnly SameSite=Strict session cookie, and logs out the
same way. Scripts and Prometheus send `Authorization: Bearer`. Guessing is rate-limited.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from edgecam.config import load_config
from edgecam.errors import ConfigError
from edgecam.web.auth import (
    LOGIN_BURST,
    Authenticator,
    Credentials,
    hash_password,
    load_credentials,
    verify_password,
)
from tests.support.mosquitto import TlsFiles
from tests.support.paths import REPO
from tests.web.serving import Served, served

PASSWORD = "correct horse battery"
TOKEN = "0123456789abcdef0123456789abcdef"
#: A cheap scrypt cost keeps the tests fast; the stored parameters are what verify uses.
HASH = hash_password(PASSWORD, n=2**10)
CSRF = "csrf-test-token-123"


def _login(
    web: Served, password: str, *, csrf: str | None = CSRF, origin: str | None = None
) -> tuple[int, dict[str, str], bytes]:
    headers = {"Content-Type": "application/json", "Cookie": f"edgecam_csrf={CSRF}"}
    if csrf is not None:
        headers["X-CSRF-Token"] = csrf
    if origin is not None:
        headers["Origin"] = origin
    body = json.dumps({"password": password}).encode()
    return web.request("POST", "/api/login", headers=headers, body=body)


def test_password_hash_round_trip() -> None:
    encoded = hash_password("s3cret-password")
    assert encoded.startswith("scrypt$16384$8$1$")
    assert verify_password("s3cret-password", encoded)
    assert not verify_password("s3cret-passwore", encoded)
    assert hash_password("same", salt=b"x" * 16) == hash_password("same", salt=b"x" * 16)
    assert hash_password("same") != hash_password("same")  # random salt
    for broken in ("", "scrypt$", "scrypt$1$8$1$AAAA$AAAA", "scrypt$9999999999$8$1$AA$AA"):
        assert not verify_password("s3cret-password", broken)


def test_pages_need_a_login_but_healthz_and_the_login_page_do_not() -> None:
    with served(password_hash=HASH) as web:
        status, headers, _ = web.request("GET", "/")
        assert status == 303 and headers["location"] == "/login"
        for path in ("/api/live", "/api/frame.jpg", "/api/events", "/metrics", "/stream.mjpg"):
            assert web.request("GET", path)[0] == 401, path
        assert web.request("GET", "/healthz")[0] in (200, 503)
        status, headers, body = web.request("GET", "/login")
        assert status == 200 and b"login.js" in body
        assert "edgecam_csrf=" in headers["set-cookie"]


def test_login_needs_csrf_json_and_same_origin() -> None:
    with served(password_hash=HASH) as web:
        assert _login(web, PASSWORD, csrf=None)[0] == 403  # no header
        assert _login(web, PASSWORD, csrf="forged")[0] == 403  # header != cookie
        evil = _login(web, PASSWORD, origin="https://evil.example")
        assert evil[0] == 403 and b"cross-site" in evil[2]
        form = web.request(
            "POST",
            "/api/login",
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Cookie": f"edgecam_csrf={CSRF}",
                "X-CSRF-Token": CSRF,
            },
            body=b"password=x",
        )
        assert form[0] == 415
        huge = web.request(
            "POST",
            "/api/login",
            headers={
                "Content-Type": "application/json",
                "Cookie": f"edgecam_csrf={CSRF}",
                "X-CSRF-Token": CSRF,
            },
            body=b"{" + b" " * 10_000 + b"}",
        )
        assert huge[0] == 413


def test_login_session_and_logout() -> None:
    with served(password_hash=HASH) as web:
        status, _, body = _login(web, "wrong password")
        assert status == 401 and json.loads(body)["error"] == "wrong password"
        status, headers, _ = _login(web, PASSWORD, origin=f"http://127.0.0.1:{web.port}")
        assert status == 200
        cookie = headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
        session = cookie.split(";")[0]
        auth = {"Cookie": f"{session}; edgecam_csrf={CSRF}"}
        assert web.request("GET", "/api/live", headers=auth)[0] == 200
        assert web.request("GET", "/", headers=auth)[0] == 200
        # logout is a write: it needs the CSRF header too
        json_type = {**auth, "Content-Type": "application/json"}
        no_csrf = web.request("POST", "/api/logout", headers=json_type, body=b"{}")
        assert no_csrf[0] == 403
        out = web.request(
            "POST",
            "/api/logout",
            headers={**auth, "Content-Type": "application/json", "X-CSRF-Token": CSRF},
            body=b"{}",
        )
        assert out[0] == 200 and "Max-Age=0" in out[1]["set-cookie"]
        assert web.request("GET", "/api/live", headers=auth)[0] == 401


def test_bearer_token_for_scripts_and_the_token_as_password() -> None:
    with served(token=TOKEN) as web:
        assert web.request("GET", "/metrics")[0] == 401
        ok = web.request("GET", "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok[0] == 200
        bad = web.request("GET", "/metrics", headers={"Authorization": f"Bearer {TOKEN[:-1]}x"})
        assert bad[0] == 401
        basic = web.request("GET", "/metrics", headers={"Authorization": f"Basic {TOKEN}"})
        assert basic[0] == 401
        assert _login(web, TOKEN)[0] == 200  # a token-only setup still lets a browser in


def test_guessing_is_rate_limited() -> None:
    with served(password_hash=HASH) as web:
        codes = [_login(web, f"guess {i}")[0] for i in range(LOGIN_BURST + 2)]
        assert codes[:LOGIN_BURST] == [401] * LOGIN_BURST
        assert codes[LOGIN_BURST:] == [429, 429]
        status, headers, _ = _login(web, PASSWORD)
        assert status == 429 and int(headers["retry-after"]) >= 1  # even the right one waits


def test_sessions_are_bounded_and_expire() -> None:
    now = [0.0]
    auth = Authenticator(Credentials(HASH, None), session_s=60, clock=lambda: now[0])
    sessions = [auth.login(PASSWORD) for _ in range(40)]
    assert all(sessions)
    alive = [s for s in sessions if s and auth.session_alive(s)]
    assert len(alive) == 32 and alive == sessions[-32:]  # the oldest logins went first
    now[0] = 61.0
    assert not any(auth.session_alive(s) for s in alive)


def test_credential_files(tmp_path: Path) -> None:
    hash_file, token_file = tmp_path / "hash", tmp_path / "token"
    hash_file.write_text(HASH + "\n")
    token_file.write_text(TOKEN + "\n")
    config = load_config(
        None,
        {
            "web.password_hash_file": str(hash_file),
            "web.token_file": str(token_file),
            "web.bind": "0.0.0.0",
            "web.enabled": True,
        },
    )
    assert load_credentials(config.web) == Credentials(HASH, TOKEN)
    token_file.write_text("short\n")
    with pytest.raises(ConfigError, match=r"web.token_file: the token in .* is shorter than 16"):
        load_credentials(config.web)
    hash_file.write_text("hunter2\n")
    with pytest.raises(ConfigError, match=r"web.password_hash_file: .* does not hold a password"):
        load_credentials(config.web)
    hash_file.unlink()
    with pytest.raises(ConfigError, match=r"web.password_hash_file: cannot read .*hash"):
        load_credentials(config.web)


def test_https_with_the_configured_certificate(tls_files: TlsFiles) -> None:
    with served(
        password_hash=HASH, tls_cert_file=str(tls_files.cert), tls_key_file=str(tls_files.key)
    ) as web:
        context = ssl.create_default_context(cafile=str(tls_files.ca))
        with urllib.request.urlopen(
            f"https://127.0.0.1:{web.port}/login", context=context, timeout=10
        ) as resp:
            assert resp.status == 200
            assert "Secure" in resp.headers["Set-Cookie"]
        with pytest.raises((http.client.HTTPException, OSError)):
            web.request("GET", "/login")  # plain HTTP to the TLS port: no answer


def _cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgecam", *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        # reachable from the network without a login: refused before anything starts
        (
            ["run", "--web", "0.0.0.0:8089", "--source", "x.mp4"],
            "web: bind = '0.0.0.0' is reachable from other machines, so the page needs a login",
        ),
        (["run", "--web", "80800", "--source", "x.mp4"], "--web '80800': expected [HOST:]PORT"),
        (["run", "--web", "::1:8080", "--source", "x.mp4"], "write an IPv6 address in brackets"),
        (
            ["run", "--web", "8080", "--set", "web.password_hash=hunter2", "--source", "x.mp4"],
            "web.password_hash: not a password hash",
        ),
    ],
)
def test_start_up_refuses_unsafe_or_bad_web_settings(args: list[str], message: str) -> None:
    done = _cli(*args)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_hash_password_command(tmp_path: Path) -> None:
    done = _cli("web", "hash-password", stdin="a long passphrase\n")
    assert done.returncode == 0, done.stderr
    line = done.stdout.strip()
    assert line.startswith('password_hash = "scrypt$')
    config = tmp_path / "edgecam.toml"
    config.write_text(f"[web]\nenabled = true\nbind = '0.0.0.0'\n{line}\n")
    assert _cli("config", "check", str(config)).returncode == 0
    encoded = line.split('"')[1]
    assert verify_password("a long passphrase", encoded)
    short = _cli("web", "hash-password", stdin="short\n")
    assert short.returncode == 2 and "use at least 8" in short.stderr


@pytest.mark.slow
def test_a_taken_port_is_one_line_and_exit_1(asset_models: Path, asset_images: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "edgecam",
                "run",
                "--source",
                str(asset_images / "pets.jpg"),
                "--web",
                str(port),
                "--sink",
                "none",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONPATH": str(REPO), "EDGECAM_MODELS_DIR": str(asset_models)},
            check=False,
        )
    assert done.returncode == 1, done.stderr
    assert f"web: cannot listen on 127.0.0.1:{port}: Address already in use" in done.stderr
    assert "Traceback" not in done.stderr
