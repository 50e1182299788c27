"""MobileNetV2 classifier → full-int8 TFLite for edgecam, with labels and a manifest entry.

Weights come from Keras' ImageNet release (online or cached), a local .keras/.h5 file, or
are recovered from an existing MobileNetV2 .tflite (e.g. the prebuilt uint8 model). Run from
the repository root: ``python -m tools.convert_mobilenet_v2 --help``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python tools/convert_mobilenet_v2.py` as well as `-m`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgecam.errors import UsageError
from tools import _bias_correction, _calibration, _classifier, _common, _convert
from tools._tflite_weights import read_graph

log = logging.getLogger("tools.convert_mobilenet_v2")

PAPER = {"title": "MobileNetV2: Inverted Residuals and Linear Bottlenecks", "arxiv": "1801.04381"}


@dataclass(frozen=True)
class Built:
    """Files written by one conversion."""

    model: Path
    float_model: Path | None
    labels: Path | None
    manifest: Path
    input_size: int
    classes: int


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="convert_mobilenet_v2",
        description="Build the Keras MobileNetV2 reference and convert it to full-int8 TFLite.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--imagenet", action="store_true", help="Keras ImageNet weights (online)")
    src.add_argument("--weights", type=Path, help="local .keras / .h5 / .weights.h5 file")
    src.add_argument(
        "--from-tflite", type=Path, help="recover weights from a MobileNetV2 .tflite file"
    )
    p.add_argument("--alpha", type=float, help="width multiplier (default 1.0 or inferred)")
    p.add_argument("--size", type=int, help="input resolution (default 224 or inferred)")
    p.add_argument("--classes", type=int, help="output classes (1000 Keras, 1001 TF-slim)")
    p.add_argument("--labels", type=Path, help="label file, one line per output class")
    p.add_argument(
        "--calibration",
        type=Path,
        action="append",
        required=True,
        help="image directory, image or video for int8 calibration (repeatable)",
    )
    p.add_argument("--calibration-count", type=int, default=64, help="frames used (default 64)")
    p.add_argument("--video-frames", type=int, default=16, help="frames sampled per video")
    p.add_argument("--io", choices=["uint8", "int8"], default="uint8", help="input/output type")
    p.add_argument(
        "--no-bias-correction",
        dest="bias_correction",
        action="store_false",
        help="skip pre-quantizing weights with empirical bias correction",
    )
    p.add_argument("--float", action="store_true", help="also write the float reference model")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--name", help="model name (default mobilenet_v2_<alpha>_<size>_int8)")
    return p


def _keras_model(args: argparse.Namespace) -> Any:
    if args.from_tflite is not None:
        _common.require_file(args.from_tflite, "TFLite model", "pass an existing .tflite file")
        model = _classifier.recover(read_graph(args.from_tflite), args.alpha)
        if args.size is not None and args.size != model.input_shape[1]:
            raise UsageError(
                f"--size {args.size} differs from {args.from_tflite.name}'s input "
                f"{model.input_shape[1]}",
                "recovered weights keep the source resolution; omit --size",
            )
        return model
    alpha = 1.0 if args.alpha is None else args.alpha
    size = 224 if args.size is None else args.size
    if args.imagenet:
        if args.classes not in (None, 1000):
            raise UsageError(f"Keras ImageNet weights have 1000 classes, not {args.classes}")
        return _classifier.build_imagenet(alpha, size)
    model = _classifier.build(alpha, size, args.classes or 1000)
    return _classifier.load_weights_file(model, args.weights)


def _labels(args: argparse.Namespace, classes: int, out: Path, name: str) -> Path | None:
    """Copy the label file next to the model; None → the shipped ImageNet table is used."""
    if args.labels is None:
        if classes not in (1000, 1001):
            raise UsageError(f"a {classes}-class model needs --labels FILE")
        return None
    lines = _common.read_labels(args.labels)
    if len(lines) not in (classes, classes + 1):
        raise UsageError(
            f"label file {args.labels} has {len(lines)} lines, the model {classes} classes",
            "one line per output class (optionally a leading background line)",
        )
    if len(lines) == classes + 1:
        lines = lines[1:]
    dst = out / f"{name}_labels.txt"
    dst.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return dst


def convert(args: argparse.Namespace, argv: Sequence[str] | None) -> Built:
    out = _common.check_out_dir(args.out)
    frames = _calibration.load_frames(args.calibration, args.calibration_count, args.video_frames)
    model = _keras_model(args)
    size = int(model.input_shape[1])
    classes = int(model.output_shape[-1])
    alpha = args.alpha if args.alpha is not None else _alpha_of(model)
    name = args.name or f"mobilenet_v2_{alpha}_{size}_int8"
    images = _calibration.to_unit_range(_calibration.batch(frames, size, size, crop=True))
    float_path = None
    if args.float:  # before bias correction changes the weights
        float_path = out / f"{_float_name(name)}.tflite"
        float_path.write_bytes(_convert.keras_float(model))
    if args.bias_correction:
        _bias_correction.apply(model, images)
    path = out / f"{name}.tflite"
    path.write_bytes(_convert.keras_int8(model, images, args.io))
    labels_path = _labels(args, classes, out, name)
    entry = _entry(
        args,
        argv,
        name=name,
        path=path,
        labels=labels_path,
        size=size,
        classes=classes,
        n_calib=len(frames),
    )
    manifest = _common.write_manifest_entry(entry, out)
    return Built(path, float_path, labels_path, manifest, size, classes)


def _float_name(name: str) -> str:
    return name[: -len("_int8")] + "_float" if name.endswith("_int8") else name + "_float"


def _alpha_of(model: Any) -> float:
    # keras names the model mobilenetv2_<alpha:.2f>_<rows>
    try:
        return float(str(model.name).split("_")[1])
    except (IndexError, ValueError):
        return 1.0


def _entry(
    args: argparse.Namespace,
    argv: Sequence[str] | None,
    *,
    name: str,
    path: Path,
    labels: Path | None,
    size: int,
    classes: int,
    n_calib: int,
) -> _common.ManifestEntry:
    if args.from_tflite is not None:
        source = f"weights recovered from {args.from_tflite.name} (sha256 "
        source += f"{_common.sha256_file(args.from_tflite)[:16]}…)"
    elif args.weights is not None:
        source = f"weights from {args.weights.name}"
    else:
        source = "Keras ImageNet weights"
    quant = _convert.io_quantization(path.read_bytes())
    return _common.ManifestEntry(
        name=name,
        task="classification",
        model_file=path,
        labels_file=labels,
        # The shipped ImageNet table has a background line 0: 1000-class models start at 1.
        labels_table=None if labels is not None else "imagenet",
        label_offset=1 if labels is None and classes == 1000 else 0,
        input_width=size,
        input_height=size,
        input_dtype=args.io,
        resize="crop",
        threshold=0.1,
        top_k=5,
        description=f"MobileNetV2 {size}x{size}, {classes} classes, full-int8 ({args.io} I/O)",
        reference="keras.applications.MobileNetV2 (Keras 3)",
        origin=f"built by tools/convert_mobilenet_v2.py: {source}; calibrated on {n_calib} "
        f"frames; {quant}",
        build=_common.command_line(argv, "convert_mobilenet_v2.py"),
        paper=PAPER,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.calibration_count < 1:
        raise UsageError(f"--calibration-count must be >= 1, got {args.calibration_count}")
    built = convert(args, argv)
    print(f"wrote {built.model} ({built.model.stat().st_size} bytes)")
    if built.float_model is not None:
        print(f"wrote {built.float_model} ({built.float_model.stat().st_size} bytes)")
    print(f"wrote {built.manifest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(_common.run_cli(main, None))
