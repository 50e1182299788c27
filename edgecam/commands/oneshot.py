"""`edgecam classify IMAGE...` and `edgecam detect IMAGE...`: one-shot inference on files."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from edgecam.commands.common import (
    add_max_pixels_flag,
    add_model_flags,
    load_with_overrides,
    model_overrides,
)
from edgecam.core.payload import classification_list, detections_list
from edgecam.dirs import state_dir
from edgecam.errors import EXIT_OK, EXIT_USAGE, EdgecamError, UsageError
from edgecam.logsetup import error_line, printable
from edgecam.pipeline.engine import Engine, open_engine
from edgecam.sources.frames import decode_image
from edgecam.types import Detections, Frame, Result

DEFAULT_MODELS = {"classify": "mobilenet_v2", "detect": "ssd_mobilenet_v1"}


def register(subparsers: Any) -> None:
    for name, task in (("classify", "classification"), ("detect", "detection")):
        parser = subparsers.add_parser(
            name,
            help=f"{task} on image files, JSON out (one object per line)",
            description=f"Run a {task} model once on each IMAGE; print JSON (or --pretty).",
        )
        parser.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
        add_model_flags(parser, default_help=f"(default: {DEFAULT_MODELS[name]})")
        parser.add_argument("--top-k", type=int, help="classes per image (classify)")
        parser.add_argument("--pretty", action="store_true", help="human-readable table")
        add_max_pixels_flag(parser)
        if name == "detect":
            parser.add_argument(
                "--annotate",
                type=Path,
                metavar="OUT",
                help="write a JPEG with the boxes drawn: a file for one image, else a directory",
            )
        parser.set_defaults(handler=oneshot_command, task=task, command_name=name)


def _result_dict(image: Path, result: Result) -> dict[str, Any]:
    out: dict[str, Any] = {
        "image": str(image),
        "model": result.model,
        "width": result.width,
        "height": result.height,
        "timings_ms": {k: round(v, 3) for k, v in result.timings_ms.items()},
    }
    if isinstance(result.output, Detections):
        out["detections"] = detections_list(result.output, result.width, result.height)
    else:
        out["classification"] = classification_list(result.output)
    return out


def _pretty(record: dict[str, Any]) -> str:
    """The table; file names and labels escaped (a name can hold terminal escapes)."""
    return printable("\n".join(_pretty_lines(record)), keep_newlines=True)


def _pretty_lines(record: dict[str, Any]) -> list[str]:
    lines = [
        f"{record['image']}  ({record['width']}x{record['height']}, {record['model']}, "
        f"invoke {record['timings_ms'].get('invoke', 0):.1f} ms)"
    ]
    if "detections" in record:
        if not record["detections"]:
            lines.append("  (no detections over threshold)")
        for det in record["detections"]:
            px = det["box_px"]
            lines.append(
                f"  {det['label']:<20} {det['score']:.3f}  "
                f"[{px['xmin']}, {px['ymin']}, {px['xmax']}, {px['ymax']}] px"
            )
    else:
        for row in record["classification"]:
            lines.append(f"  {row['class_id']:>5}  {row['label']:<40} {row['score']:.3f}")
    return lines


def _write_annotated(
    target: Path, image: Path, frame: Frame, detections: Detections, *, many: bool
) -> Path:
    """One image -> the file given; several -> <dir>/<stem>.annotated.jpg for each."""
    from edgecam.core.annotate import annotate, encode_jpeg

    try:
        if many or target.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            target = target / f"{image.stem}.annotated.jpg"
        target.write_bytes(encode_jpeg(annotate(frame.pixels, detections), 90))
    except OSError as exc:
        raise UsageError(f"--annotate {target}: cannot write: {exc.strerror}") from exc
    return target


def check_annotate_target(target: Path | None, many: bool) -> None:
    """Before the model loads: several images need a directory there (or nothing yet), one
    image a file; a FIFO or socket would block or fail the write."""
    if target is None:
        return
    if many and target.exists() and not target.is_dir():
        raise UsageError(f"--annotate {target}: not a directory (several images were given)")
    if target.is_fifo() or target.is_socket():
        raise UsageError(f"--annotate {target}: a named pipe or socket, expected a file")


def _check_task(engine: Engine, task: str, command: str) -> None:
    if engine.task != task:
        other = "detect" if command == "classify" else "classify"
        raise UsageError(
            f"model {engine.name} is a {engine.task} model; use `edgecam {other}` "
            f"or pass a {task} model with --model"
        )


def oneshot_command(args: argparse.Namespace) -> int:
    overrides = model_overrides(args)
    overrides["model.name"] = args.model or DEFAULT_MODELS[args.command_name]
    overrides["model.top_k"] = args.top_k
    overrides["source.max_pixels"] = args.max_pixels
    config = load_with_overrides(args, overrides)
    check_annotate_target(getattr(args, "annotate", None), many=len(args.images) > 1)
    engine = open_engine(config.model, state_dir(config.service.state_dir))
    _check_task(engine, args.task, args.command_name)
    status = EXIT_OK
    for index, image in enumerate(args.images):
        try:
            frame = Frame(
                decode_image(image, max_pixels=config.source.max_pixels),
                index,
                time.time(),
                time.monotonic(),
                source=str(image),
                pixel_format="BGR",
            )
        except EdgecamError as exc:
            # Report and go on: results already printed for other images stay valid.
            print(error_line(f"edgecam: error: {exc}"), file=sys.stderr)
            status = EXIT_USAGE
            continue
        result = engine.process(frame)
        record = _result_dict(image, result)
        if getattr(args, "annotate", None) and isinstance(result.output, Detections):
            record["annotated"] = str(
                _write_annotated(
                    args.annotate, image, frame, result.output, many=len(args.images) > 1
                )
            )
        print(_pretty(record) if args.pretty else json.dumps(record), flush=True)
    return status
