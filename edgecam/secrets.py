"""One rule for secrets: which keys hold them, how they are masked, where they hide in URLs.

Every place that shows a config value, a source name or a log line masks secrets the same way,
with :data:`MASK`. Standard library only, so the logging setup and the sources can use it
without importing the config machinery; pydantic's ``SecretStr`` is recognised by its
``get_secret_value`` method.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from edgecam.dirs import read_regular_file
from edgecam.errors import ConfigError

#: What a secret is replaced with, everywhere.
MASK = "********"
#: Keys whose values are secrets wherever they appear (masked by `config show`, never logged).
SECRET_KEYS = frozenset({"password", "passphrase", "secret", "token", "api_key"})
#: What an environment variable holding a secret may be called.
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^/@:\s]*:)(?P<pw>[^/@\s]+)(?=@)", re.I)


def _is_secret_str(value: Any) -> bool:
    return callable(getattr(value, "get_secret_value", None))


def mask_url_password(text: str) -> str:
    """`rtsp://user:pw@cam/` -> `rtsp://user:********@cam/` (also inside longer text)."""
    return _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, text)


def url_passwords(text: str) -> list[str]:
    """The passwords embedded in URLs inside ``text``."""
    return [m.group("pw") for m in _URL_PASSWORD.finditer(text)]


def with_url_password(url: str, password: str) -> str:
    """`rtsp://user@cam/x` + password -> `rtsp://user:<quoted password>@cam/x`."""
    scheme, sep, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    user, at, host = netloc.rpartition("@")
    if not sep or not at or ":" in user:
        raise ValueError("expected a URL with a user name and no password: scheme://USER@host/")
    return f"{scheme}://{user}:{quote(password, safe='')}@{host}{slash}{path}"


def _plain(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    return dump(mode="python") if callable(dump) else value


def masked(value: Any, key: str = "") -> Any:
    """Plain TOML-able data (a pydantic model is dumped first) with every secret masked."""
    value = _plain(value)
    if _is_secret_str(value) or (key in SECRET_KEYS and value not in (None, "")):
        return MASK
    if isinstance(value, Mapping):
        return {k: masked(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [masked(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, str):
        return mask_url_password(value)
    return value


def secret_values(value: Any) -> list[str]:
    """Secret strings present in ``value`` (a config model or plain data), for log redaction."""
    found: list[str] = []

    def walk(item: Any, key: str = "") -> None:
        if _is_secret_str(item):
            found.append(str(item.get_secret_value()))
        elif isinstance(item, Mapping):
            for k, v in item.items():
                walk(v, str(k))
        elif isinstance(item, list | tuple):
            for v in item:
                walk(v)
        elif isinstance(item, str):
            if key in SECRET_KEYS:
                found.append(item)
            found.extend(url_passwords(item))

    walk(_plain(value))
    return [s for s in dict.fromkeys(found) if s]


def read_secret(
    field: str,
    *,
    file: Path | None = None,
    env: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> str | None:
    """The secret named by ``<field>_file`` or ``<field>_env``, read only when it is used (so
    `config show` and `config check` never need it); ConfigError naming the field otherwise."""
    if env:
        values = os.environ if environ is None else environ
        if env not in values:
            raise ConfigError(
                f"{field}_env: environment variable {env} is not set",
                f"export it, or use {field}_file",
            )
        return values[env]
    if file:
        try:
            return read_regular_file(file, 64 * 1024).decode("utf-8").rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(f"{field}_file: cannot read {file}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{field}_file: {file} is not UTF-8 text") from None
    return None
