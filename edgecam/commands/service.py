"""`edgecam service install|uninstall`: put the systemd unit and example config in place."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from edgecam.config import load_config
from edgecam.errors import EXIT_OK, UsageError
from edgecam.service.install import (
    DEFAULT_EXEC,
    Layout,
    check_executable,
    current_executable,
    execute,
    plan_install,
    plan_uninstall,
    systemd_running,
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "service",
        help="install or remove the systemd service (run as root)",
        description="Install the hardened systemd unit and an example config, and enable it.",
    )
    sub = parser.add_subparsers(dest="service_command", metavar="ACTION", required=True)
    install = sub.add_parser("install", help="install the unit + example config, enable --now")
    install.add_argument(
        "--user",
        help="run as this user (default: a dynamic user 'edgecam'; an existing static user "
        "of that name is used as is)",
    )
    install.add_argument(
        "--edgecam",
        type=Path,
        help=f"edgecam executable for ExecStart (default: this one, else {DEFAULT_EXEC})",
    )
    _common(install)
    install.set_defaults(handler=install_command)
    uninstall = sub.add_parser("uninstall", help="stop, disable and remove the unit")
    uninstall.add_argument(
        "--purge", action="store_true", help="also remove /etc/edgecam and the state directory"
    )
    _common(uninstall)
    uninstall.set_defaults(handler=uninstall_command)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    parser.add_argument(
        "--prefix",
        type=Path,
        default=Path("/"),
        metavar="ROOT",
        help="install under ROOT instead of / (packaging, tests); never runs systemctl",
    )


def require_root(root: Path, *, dry_run: bool, euid: int, action: str) -> None:
    """Writing to the real / needs root; a dry run or a --prefix does not."""
    if root == Path("/") and not dry_run and euid != 0:
        raise UsageError(
            f"edgecam service {action} changes /etc and /var/lib: run it as root",
            "sudo edgecam service ... (or --dry-run to see the plan)",
        )


def _layout(args: argparse.Namespace) -> tuple[Layout, bool]:
    root = args.prefix.resolve()
    if root.exists() and not root.is_dir():
        raise UsageError(f"--prefix {args.prefix}: not a directory")
    require_root(root, dry_run=args.dry_run, euid=os.geteuid(), action=args.service_command)
    return Layout(root), root == Path("/") and systemd_running()


def _check(path: Path) -> None:
    load_config(path)  # raises ConfigError listing every problem


def install_command(args: argparse.Namespace) -> int:
    layout, systemd = _layout(args)
    executable = args.edgecam or current_executable()
    if executable is None:
        print(f"warning: no edgecam executable next to this Python; ExecStart stays {DEFAULT_EXEC}")
    else:
        check_executable(executable, root=layout.root)
    steps = plan_install(
        layout,
        executable=executable,
        user=args.user,
        systemd=systemd,
        check_config=_check,
    )
    execute(steps, dry_run=args.dry_run, echo=print)
    if not args.dry_run:
        print("done: `systemctl status edgecam`, logs: `journalctl -u edgecam -f`")
    return EXIT_OK


def uninstall_command(args: argparse.Namespace) -> int:
    layout, systemd = _layout(args)
    execute(
        plan_uninstall(layout, purge=args.purge, systemd=systemd), dry_run=args.dry_run, echo=print
    )
    return EXIT_OK
