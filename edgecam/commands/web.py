"""`edgecam web hash-password`: the line to put in `[web] password_hash` (the password itself
is never stored)."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from edgecam.errors import EXIT_OK, UsageError
from edgecam.web.auth import hash_password

MIN_PASSWORD = 8


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "web",
        help="helpers for the built-in web page (password hash)",
        description="Helpers for [web]: the page itself runs inside `edgecam run --web`.",
    )
    sub = parser.add_subparsers(dest="web_command", metavar="ACTION", required=True)
    hashed = sub.add_parser(
        "hash-password",
        help="print the scrypt hash of a password for [web] password_hash",
        description=(
            "Asks for the password twice (or reads one line from stdin when it is not a "
            'terminal) and prints `password_hash = "scrypt$..."` for the config.'
        ),
    )
    hashed.set_defaults(handler=hash_password_command)


def _read_password() -> str:
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("web password: ")
    if getpass.getpass("again: ") != first:
        raise UsageError("the two passwords differ; nothing printed")
    return first


def hash_password_command(args: argparse.Namespace) -> int:
    password = _read_password()
    if len(password) < MIN_PASSWORD:
        raise UsageError(
            f"the password has {len(password)} characters; use at least {MIN_PASSWORD}"
        )
    print(f'password_hash = "{hash_password(password)}"')
    return EXIT_OK
