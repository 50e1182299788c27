"""`edgecam config check|show`: validate a config without running, print the effective one.

`show` prints TOML that loads back to the same config (secrets replaced by a mask), with
unset optional fields as comments so every available key is visible in one place.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from edgecam.commands.common import add_set_flag
from edgecam.config import DEFAULT_CONFIG_PATH, EdgecamConfig, load_config, parse_overrides
from edgecam.config.writer import dump_toml
from edgecam.errors import EXIT_OK
from edgecam.secrets import masked


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "config",
        help="check a config file, or show the effective config",
        description="Validate the TOML config (all problems at once) or print the effective one.",
    )
    sub = parser.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    check = sub.add_parser("check", help="validate a config file without running (exit 2 if bad)")
    check.add_argument(
        "path", nargs="?", type=Path, default=None, help=f"default: {DEFAULT_CONFIG_PATH}"
    )
    add_set_flag(check)
    check.set_defaults(handler=check_command)
    show = sub.add_parser("show", help="print the effective config as TOML, secrets masked")
    show.add_argument("--config", "-c", type=Path, help="TOML config file (default: none)")
    add_set_flag(show)
    show.set_defaults(handler=show_command)


def check_command(args: argparse.Namespace) -> int:
    path: Path = args.path or DEFAULT_CONFIG_PATH
    config = load_config(path, parse_overrides(args.set_values))
    for warning in missing_files(config):
        print(f"warning: {warning}")
    print(f"{path}: OK")
    return EXIT_OK


def show_command(args: argparse.Namespace) -> int:
    config = load_config(args.config, parse_overrides(args.set_values))
    origin = str(args.config) if args.config else "built-in defaults"
    extra = f" + {len(args.set_values)} --set override(s)" if args.set_values else ""
    print(f"# edgecam effective config: {origin}{extra}; secrets masked")
    print(dump_toml(masked(config)), end="")
    return EXIT_OK


def missing_files(config: EdgecamConfig) -> list[str]:
    """Input files the config names that do not exist here (warnings: the config may be
    written on a laptop for a Pi)."""
    return [
        f"{path}: {value} does not exist on this machine"
        for path, value in _walk(config)
        if path.rsplit(".", 1)[-1].endswith("_file")
        and isinstance(value, Path)
        and not value.exists()
    ]


def _walk(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _walk(getattr(value, name), f"{path}.{name}" if path else name)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _walk(item, f"{path}.{key}")
    else:
        yield path, value
