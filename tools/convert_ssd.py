"""SSDLite-MobileNetV2 / SSD-MobileNetV1 → full-int8 TFLite with TFLite_Detection_PostProcess.

Weights: the TF object-detection reference checkpoint (``--checkpoint``), recovered from a
.tflite of the same architecture (``--from-tflite``), or random (``--random``, structure
only). Writes the model, optionally its float twin, and a manifest entry.
Run from the repository root: ``python -m tools.convert_ssd --help``.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgecam.errors import UsageError
from tools import _bias_correction, _calibration, _common
from tools._ssd_export import PostprocessOptions, convert
from tools._ssd_model import ARCHS, SSDConfig, SSDModel, build, complexity
from tools._ssd_weights import load_checkpoint, recover
from tools._tflite_weights import read_graph

log = logging.getLogger("tools.convert_ssd")

DEFAULT_SIZE = {"ssd_mobilenet_v1": 300, "ssdlite_mobilenet_v2": 320}
#: MobileNetV2 paper, Table 6: SSDLite at 320x320.
PAPER_PARAMS, PAPER_MADDS = 4.3e6, 0.8e9
PAPERS = {
    "ssd_mobilenet_v1": {"title": "SSD: Single Shot MultiBox Detector", "arxiv": "1512.02325"},
    "ssdlite_mobilenet_v2": {
        "title": "MobileNetV2: Inverted Residuals and Linear Bottlenecks",
        "arxiv": "1801.04381",
    },
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="convert_ssd", description=__doc__.splitlines()[0])
    p.add_argument("--arch", choices=ARCHS, default="ssdlite_mobilenet_v2")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", type=Path, help="TF OD checkpoint dir or model.ckpt prefix")
    src.add_argument("--from-tflite", type=Path, help="recover weights from this .tflite")
    src.add_argument("--random", action="store_true", help="random weights (structure only)")
    p.add_argument("--size", type=int, help="input size (default 300 v1, 320 SSDLite)")
    p.add_argument("--depth-multiplier", type=float, help="width (default 1.0 or inferred)")
    p.add_argument("--num-classes", type=int, default=90, help="classes without background")
    p.add_argument("--max-detections", type=int, default=10)
    p.add_argument("--nms-iou", type=float, default=0.6, help="NMS IoU threshold")
    p.add_argument("--nms-score", type=float, default=1e-8, help="NMS score threshold")
    p.add_argument("--regular-nms", action="store_true", help="per-class NMS (slower)")
    p.add_argument("--calibration", type=Path, action="append", default=[])
    p.add_argument("--calibration-count", type=int, default=64)
    p.add_argument("--video-frames", type=int, default=16)
    p.add_argument("--io", choices=["uint8", "int8"], default="uint8", help="input type")
    p.add_argument("--no-bias-correction", dest="bias_correction", action="store_false")
    p.add_argument("--float", action="store_true", help="also write the float reference model")
    p.add_argument("--labels", type=Path, help="label file (default: the shipped COCO table)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--name", help="model name (default <arch>_<size>_int8)")
    return p


def _config(args: argparse.Namespace) -> SSDConfig:
    size = args.size or DEFAULT_SIZE[args.arch]
    dm = args.depth_multiplier
    if dm is None and args.from_tflite is not None:
        graph = read_graph(args.from_tflite)
        first = graph.layers[0].out_channels if graph.layers else 32
        dm = first / 32.0  # Conv2d_0 / Conv has 32·dm filters
        in_shape = graph.input_shape
        if args.size is None and len(in_shape) == 4:
            size = in_shape[1]
    return SSDConfig(args.arch, size, dm or 1.0, args.num_classes)


def load_weights(args: argparse.Namespace) -> SSDModel:
    cfg = _config(args)
    detector = build(cfg)
    if args.from_tflite is not None:
        _common.require_file(args.from_tflite, "TFLite model", "pass an existing .tflite file")
        recover(detector, read_graph(args.from_tflite))
    elif args.checkpoint is not None:
        load_checkpoint(detector, args.checkpoint)
    return detector


def complexity_report(detector: SSDModel) -> dict[str, Any]:
    """Parameters and MAdds (BN folded, postprocess excluded) beside the paper's numbers."""
    params, madds = complexity(detector.model)
    report: dict[str, Any] = {
        "params": params,
        "madds": madds,
        "anchors": int(detector.anchors.shape[0]),
        "anchors_per_location": detector.anchors_per_location,
        "feature_maps": detector.feature_sizes,
        "class_head_params": sum(
            math.prod(u.kernel_shape) + u.kernel_shape[-1]
            for head in detector.heads
            for u in head["class"]
        ),
    }
    if detector.config.arch == "ssdlite_mobilenet_v2" and detector.config.size == 320:
        report["paper_params"] = PAPER_PARAMS
        report["paper_madds"] = PAPER_MADDS
        report["params_vs_paper"] = params / PAPER_PARAMS - 1.0
        report["madds_vs_paper"] = madds / PAPER_MADDS - 1.0
    return report


def _print_complexity(rep: dict[str, Any]) -> None:
    print(
        f"params {rep['params'] / 1e6:.3f} M, MAdds {rep['madds'] / 1e9:.3f} B, "
        f"{rep['anchors']} anchors {rep['anchors_per_location']} per location, "
        f"feature maps {rep['feature_maps']}"
    )
    if "paper_params" in rep:
        print(
            f"paper (MobileNetV2 Table 6, SSDLite 320): 4.3 M params, 0.8 B MAdds → "
            f"{rep['params_vs_paper']:+.1%} params, {rep['madds_vs_paper']:+.1%} MAdds. "
            "Params differ because this head predicts 91 classes (90 COCO + background) "
            "for 3 boxes per cell on the first map and 6 elsewhere (the reference "
            "config); the class predictors alone hold "
            f"{rep['class_head_params'] / 1e6:.2f} M."
        )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.calibration_count < 1:
        raise UsageError(f"--calibration-count must be >= 1, got {args.calibration_count}")
    if not args.calibration:
        raise UsageError("int8 calibration needs data", "pass --calibration DIR_OR_VIDEO")
    out = _common.check_out_dir(args.out)
    frames = _calibration.load_frames(args.calibration, args.calibration_count, args.video_frames)
    detector = load_weights(args)
    _print_complexity(complexity_report(detector))
    cfg = detector.config
    coco = "coco_" if cfg.num_classes == 90 else ""
    name = args.name or f"{cfg.arch}_{coco}{cfg.size}_int8"  # manifest's ssdlite_v2 file name
    opts = PostprocessOptions(
        max_detections=args.max_detections,
        use_regular_nms=args.regular_nms,
        nms_score_threshold=args.nms_score,
        nms_iou_threshold=args.nms_iou,
        num_classes=cfg.num_classes,
    )
    images = _calibration.to_unit_range(_calibration.batch(frames, cfg.size, cfg.size, crop=False))
    if args.float:
        float_path = out / f"{name.removesuffix('_int8')}_float.tflite"
        float_path.write_bytes(convert(detector.model, detector.anchors, opts, None))
        print(f"wrote {float_path} ({float_path.stat().st_size} bytes)")
    if args.bias_correction:
        _bias_correction.apply(detector.model, images)
    path = out / f"{name}.tflite"
    path.write_bytes(convert(detector.model, detector.anchors, opts, images, args.io))
    print(f"wrote {path} ({path.stat().st_size} bytes)")
    entry = _entry(args, argv, name=name, path=path, cfg=cfg, n_calib=len(frames))
    manifest = _common.write_manifest_entry(entry, out)
    print(f"wrote {manifest}")
    return 0


def _entry(
    args: argparse.Namespace,
    argv: Sequence[str] | None,
    *,
    name: str,
    path: Path,
    cfg: SSDConfig,
    n_calib: int,
) -> _common.ManifestEntry:
    from tools._convert import io_quantization

    if args.checkpoint is not None:
        source = f"reference checkpoint {args.checkpoint.name}"
    elif args.from_tflite is not None:
        source = f"weights recovered from {args.from_tflite.name}"
    else:
        source = "RANDOM weights (structure test only, detects nothing)"
    labels = None
    if args.labels is not None:
        lines = _common.read_labels(args.labels)
        if len(lines) != cfg.num_classes:
            raise UsageError(
                f"label file {args.labels} has {len(lines)} lines, expected {cfg.num_classes}",
                "one line per class id of the postprocess op (no background line)",
            )
        labels = path.with_name(f"{name}_labels.txt")
        labels.write_text("\n".join(lines) + "\n", encoding="utf-8")
    elif cfg.num_classes != 90:
        raise UsageError(f"a {cfg.num_classes}-class detector needs --labels FILE")
    return _common.ManifestEntry(
        name=name,
        task="detection",
        model_file=path,
        labels_file=labels,
        labels_table=None if labels else "coco",
        input_width=cfg.size,
        input_height=cfg.size,
        input_dtype=args.io,
        resize="stretch",
        threshold=0.5,
        top_k=args.max_detections,
        description=f"{cfg.arch} {cfg.size}x{cfg.size} depth {cfg.depth_multiplier}, "
        f"{cfg.num_classes} classes, full-int8 with TFLite_Detection_PostProcess",
        reference="tensorflow/models research/object_detection (ssd_mobilenet_v1 / ssdlite "
        "configs), rebuilt in Keras 3 by tools/_ssd_model.py",
        origin=f"built by tools/convert_ssd.py: {source}; calibrated on {n_calib} frames; "
        f"{io_quantization(path.read_bytes())}",
        build=_common.command_line(argv, "convert_ssd.py"),
        paper=PAPERS[cfg.arch],
    )


if __name__ == "__main__":
    raise SystemExit(_common.run_cli(main, None))
