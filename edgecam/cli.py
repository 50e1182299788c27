"""Command-line entry point: parse arguments, dispatch, map errors to exit codes.

Each sub-command lives in its own module under edgecam.commands and exposes
``register(subparsers)``; this module only wires them together and owns the error table.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from edgecam import __version__
from edgecam.errors import EXIT_FAILURE, EXIT_USAGE, EdgecamError, describe_bug
from edgecam.logsetup import error_line, setup_logging

# Module names under edgecam.commands, in the order they appear in --help.
COMMAND_MODULES = (
    "run",
    "oneshot",
    "models",
    "doctor",
    "config",
    "service",
    "watch",
    "bench",
    "web",
)

log = logging.getLogger("edgecam")


def requested_command(argv: Sequence[str]) -> str | None:
    """The sub-command named on the command line (first argument that is one), if any."""
    return next((arg for arg in argv if arg in COMMAND_MODULES), None)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """All sub-commands, or `only` that one: a command's module imports what it needs (a
    run loads OpenCV, the interpreter...), so a run does not pay for the others' imports."""
    parser = argparse.ArgumentParser(
        prog="edgecam",
        description="On-camera TFLite inference (MobileNetV2 / SSD) published as JSON or MQTT.",
    )
    parser.add_argument("--version", action="version", version=f"edgecam {__version__}")
    parser.add_argument(
        "--log-level",
        default=None,
        choices=["debug", "info", "warning", "error"],
        help="log verbosity on stderr (default: warning, or logging.level from the config)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in (only,) if only else COMMAND_MODULES:
        module = importlib.import_module(f"edgecam.commands.{name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else list(argv)
    command = requested_command(arguments)
    if command is not None and {"-h", "--help"} & set(arguments[: arguments.index(command)]):
        command = None  # `edgecam --help run`: the top-level help lists every command
    parser = build_parser(command)
    args = parser.parse_args(arguments)
    # Commands that load a config (run) call setup_logging again with its [logging] section.
    setup_logging(args.log_level or "warning")
    try:
        code: int = args.handler(args)
        sys.stdout.flush()  # a full disk behind `> file` is this command's failure, not exit's
        return code
    except EdgecamError as exc:
        print(error_line(f"edgecam: error: {exc}"), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return EXIT_FAILURE
    except BrokenPipeError:
        # stdout closed by e.g. `| head`: not an error of ours.
        sys.stderr.close()
        return 0
    except OSError as exc:
        print(error_line(f"edgecam: error: {describe_os_error(exc)}"), file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, FileNotFoundError | PermissionError) else EXIT_FAILURE
    except Exception as exc:  # a bug: surfaces as one line naming where, never swallowed
        log.debug("traceback of the internal error", exc_info=exc)
        print(
            error_line(
                f"edgecam: internal error: {describe_bug(exc)}"
                " (a bug: please report this line; --log-level debug shows the traceback)"
            ),
            file=sys.stderr,
        )
        return EXIT_FAILURE


def describe_os_error(exc: OSError) -> str:
    """`<file>: <reason>` when the error names a file (standard output included, see
    :class:`_StandardOutput`), else the error as it is."""
    if exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc)


class _StandardOutput(io.FileIO):
    """fd 1 whose write errors name it: `edgecam models list > /full/disk/x` then says
    "standard output: No space left on device" instead of a bare errno."""

    def write(self, data: Any) -> int:
        try:
            return super().write(data)
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, "standard output") from exc


def _name_standard_output() -> None:
    """Rebuild sys.stdout on :class:`_StandardOutput`, keeping its encoding and buffering."""
    old = sys.stdout
    try:
        raw = _StandardOutput(old.fileno(), "wb", closefd=False)
    except (AttributeError, OSError, ValueError):
        return  # no real fd 1 (closed, or replaced by an embedding program): leave it
    old.flush()
    sys.stdout = io.TextIOWrapper(
        io.BufferedWriter(raw),
        encoding=old.encoding,
        errors=old.errors,
        line_buffering=bool(old.line_buffering),
    )


def entry() -> None:
    """The `edgecam` executable: main(), then exit without tearing the heap down.

    Every command has closed what it opened (sinks, sources, the outbox) when main returns;
    what is left is the interpreter's finalization, which frees every object and runs the
    C++ destructors of the TFLite interpreter, OpenCV and numpy: 0.3-0.4 s of a 2-core
    board's time that nobody waits for. Logs and stdio are flushed first. In-process callers
    (tests) use main().
    """
    _name_standard_output()
    code = main()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # closed or broken: nothing to lose
            stream.flush()
    os._exit(code)
