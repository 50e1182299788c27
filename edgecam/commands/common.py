"""Flags shared by several commands, and their mapping onto config overrides."""

from __future__ import annotations

import argparse
import socket
from pathlib import Path
from typing import Any

from edgecam.config import EdgecamConfig, load_config, parse_overrides
from edgecam.core.payload import sanitize_device_id


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
    return sanitize_device_id(config_value or socket.gethostname())
