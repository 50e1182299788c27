"""Flags shared by several commands, and their mapping onto config overrides."""

from __future__ import annotations

import argparse
import logging
import os
import socket
from pathlib import Path
from typing import Any

from edgecam.config import EdgecamConfig, load_config, parse_overrides
from edgecam.core.payload import sanitize_device_id
from edgecam.errors import ConfigError

log = logging.getLogger(__name__)


def add_model_flags(parser: argparse.ArgumentParser, *, default_help: str = "") -> None:
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model", "-m", help=f"manifest name or .tflite path {default_help}".strip()
    )
    group.add_argument("--models-dir", type=Path, help="directory searched first for model files")
    group.add_argument("--labels-file", type=Path, help="label file overriding the model's")
    group.add_argument("--runtime", choices=["auto", "litert", "tflite"], help="TFLite interpreter")
    group.add_argument(
        "--threads",
        type=int,
        help="interpreter threads (default: `run` measures all cores vs one fewer; else all)",
    )
    group.add_argument("--threshold", type=float, help="minimum score to report (0..1)")
    group.add_argument("--labels", help="comma-separated labels to keep, e.g. person,car")


def add_max_pixels_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-pixels",
        type=int,
        metavar="N",
        help="refuse images and video frames larger than N pixels, before decoding them "
        "(source.max_pixels, default 50000000)",
    )


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", type=Path, help="TOML config file")
    add_set_flag(parser)


def add_set_flag(parser: argparse.ArgumentParser) -> None:
    """`--set SECTION.KEY=VALUE`, the one override flag of every command that takes a config."""
    parser.add_argument(
        "--set",
        dest="set_values",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override any config field (TOML value syntax), repeatable",
    )


def model_overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "model.name": args.model,
        "model.models_dir": args.models_dir,
        "model.labels_file": args.labels_file,
        "model.runtime": args.runtime,
        "model.threads": args.threads,
        "model.threshold": args.threshold,
        "model.labels": args.labels,
    }


def load_with_overrides(args: argparse.Namespace, overrides: dict[str, Any]) -> EdgecamConfig:
    merged = dict(overrides)
    merged.update(parse_overrides(getattr(args, "set_values", [])))
    return load_config(getattr(args, "config", None), merged)


def device_id(config_value: str | None) -> str:
    """The configured id (the config already refused one that breaks the rule), else the
    hostname made into one: the hostname is not user input, so it is adapted, not refused."""
    if config_value:
        return config_value
    hostname = socket.gethostname()
    derived = sanitize_device_id(hostname)
    if derived != hostname:
        log.info("device id %r derived from host name %r (set mqtt.device_id)", derived, hostname)
    return derived


def check_output_file(target: str | None) -> None:
    """Refuse an output.jsonl (`-o`) that cannot be written before the model loads: a usage
    mistake (exit 2), not a failure found after start-up. '-' (stdout) and '' (off) pass."""
    if not target or target == "-":
        return
    path = Path(target)
    problem = None
    if path.is_dir():
        problem = "is a directory, expected a file to append JSON lines to"
    elif not path.parent.is_dir():
        problem = f"directory {path.parent} does not exist"
    elif path.exists() and not os.access(path, os.W_OK):
        problem = "is not writable by this user"
    elif not path.exists() and not os.access(path.parent, os.W_OK | os.X_OK):
        problem = f"directory {path.parent} is not writable by this user"
    if problem:
        raise ConfigError(f"output.jsonl (-o) {target}: {problem}")
