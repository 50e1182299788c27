"""SSDLite-MobileNetV2 / SSD-MobileNetV1 → full-int8 TFLite with TFLite_Detection_PostProcess.

Weights: the official zoo checkpoint, downloaded (``--official``), from its tarball
(``--tarball``) or unpacked (``--checkpoint``), verified against the pinned release first;
a checkpoint of one's own (``--checkpoint DIR --own-checkpoint``); recovered from a .tflite
of the same architecture (``--from-tflite``); or random (``--random``, structure only).
Input size, classes, anchors, box coder and NMS come from the checkpoint's pipeline.config.
Writes the model, its manifest entry, optionally its float twin, and — when the checkpoint
brought its TF graph (model.ckpt.meta) — a fidelity report against that graph.
Run from the repository root: ``python -m tools.convert_ssd --help``.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgecam.core import ssd
from edgecam.errors import UsageError
from edgecam.models.fetch import default_fetch_dir
from tools import _bias_correction, _calibration, _common, _release, _ssd_source
from tools._pipeline_config import SSDSettings
from tools._ssd_export import PostprocessOptions, convert
from tools._ssd_model import ARCHS, SSDConfig, SSDModel, build, complexity
from tools._ssd_source import Source
from tools._ssd_weights import load_checkpoint, recover
from tools._tflite_weights import read_graph

log = logging.getLogger("tools.convert_ssd")

#: Without a pipeline.config: the reference configs' sizes (the zoo SSDLite is 300, not 320).
DEFAULT_SIZE = {"ssd_mobilenet_v1": 300, "ssdlite_mobilenet_v2": 300}
#: MobileNetV2 paper, Table 6: SSDLite at 320x320.
PAPER_PARAMS, PAPER_MADDS = 4.3e6, 0.8e9
PAPERS = {
    "ssd_mobilenet_v1": {"title": "SSD: Single Shot MultiBox Detector", "arxiv": "1512.02325"},
    "ssdlite_mobilenet_v2": {
        "title": "MobileNetV2: Inverted Residuals and Linear Bottlenecks",
        "arxiv": "1801.04381",
    },
}


OFFICIAL_COMMAND = (
    "python -m tools.convert_ssd --official ssdlite_mobilenet_v2_coco --calibration DIR_OR_VIDEO"
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="convert_ssd", description=__doc__.splitlines()[0])
    p.add_argument("--arch", choices=ARCHS, help="default: from pipeline.config, else SSDLite")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--official",
        choices=sorted(_release.RELEASES),
        help="download the official zoo tarball (HTTPS), verify it, convert it",
    )
    src.add_argument("--tarball", type=Path, help="the official tarball, fetched elsewhere")
    src.add_argument("--checkpoint", type=Path, help="TF OD checkpoint dir or model.ckpt prefix")
    src.add_argument("--from-tflite", type=Path, help="recover weights from this .tflite")
    src.add_argument("--random", action="store_true", help="random weights (structure only)")
    p.add_argument(
        "--own-checkpoint",
        action="store_true",
        help="--checkpoint is your own training, not the pinned official release",
    )
    p.add_argument("--pipeline-config", type=Path, help="default: beside the checkpoint")
    p.add_argument("--url", help="download --official from this mirror (HTTPS)")
    p.add_argument("--cache", type=Path, help="download dir (default ~/.cache/edgecam/checkpoints)")
    p.add_argument("--verify-only", action="store_true", help="check the checkpoint, write nothing")
    p.add_argument("--size", type=int, help="input size (default: pipeline.config, else 300)")
    p.add_argument("--depth-multiplier", type=float, help="width (default 1.0 or inferred)")
    p.add_argument("--num-classes", type=int, help="classes without background (default 90)")
    p.add_argument("--max-detections", type=int, default=10)
    p.add_argument("--nms-iou", type=float, help="NMS IoU threshold (default: pipeline.config)")
    p.add_argument("--nms-score", type=float, help="NMS score threshold (default: config)")
    p.add_argument("--regular-nms", action="store_true", help="per-class NMS, as the TF graph")
    p.add_argument("--calibration", type=Path, action="append", default=[])
    p.add_argument("--calibration-count", type=int, default=64)
    p.add_argument("--video-frames", type=int, default=16)
    p.add_argument("--io", choices=["uint8", "int8"], default="uint8", help="input type")
    p.add_argument("--no-bias-correction", dest="bias_correction", action="store_false")
    p.add_argument("--float", action="store_true", help="also write the float reference model")
    p.add_argument("--report-images", type=int, default=8, help="frames in the fidelity report")
    p.add_argument("--labels", type=Path, help="label file (default: the shipped COCO table)")
    p.add_argument("--out", type=Path, help="default with --official/--tarball: edgecam's models")
    p.add_argument("--name", help="model name (default <arch>_<size>_int8)")
    return p


def _config(args: argparse.Namespace, settings: SSDSettings | None) -> SSDConfig:
    """Architecture and sizes: pipeline.config first; flags may only agree, except --size."""
    arch = args.arch or (settings.arch if settings else "ssdlite_mobilenet_v2")
    dm = args.depth_multiplier
    classes = args.num_classes
    if settings is not None:
        where = settings.source
        for flag, mine, theirs in (
            ("--arch", args.arch, settings.arch),
            ("--depth-multiplier", dm, settings.depth_multiplier),
            ("--num-classes", classes, settings.num_classes),
        ):
            if mine is not None and mine != theirs:
                raise UsageError(f"{flag} {mine} contradicts {where} ({theirs})")
        return SSDConfig(
            settings.arch,
            args.size or settings.height,
            settings.depth_multiplier,
            settings.num_classes,
            settings.min_depth,
            settings.anchors,
        )
    size = args.size or DEFAULT_SIZE[arch]
    if dm is None and args.from_tflite is not None:
        graph = read_graph(args.from_tflite)
        first = graph.layers[0].out_channels if graph.layers else 32
        dm = first / 32.0  # Conv2d_0 / Conv has 32·dm filters
        in_shape = graph.input_shape
        if args.size is None and len(in_shape) == 4:
            size = in_shape[1]
    return SSDConfig(arch, size, dm or 1.0, classes or 90)


def _postprocess(
    args: argparse.Namespace, cfg: SSDConfig, settings: SSDSettings | None
) -> PostprocessOptions:
    """Like TF's export_tflite_ssd_graph: thresholds and box coder from the config, at most
    --max-detections boxes, fast (class-agnostic) NMS unless --regular-nms."""
    nms = settings.nms if settings else None
    return PostprocessOptions(
        max_detections=args.max_detections,
        use_regular_nms=args.regular_nms,
        nms_score_threshold=_pick(args.nms_score, nms.score_threshold if nms else None, 1e-8),
        nms_iou_threshold=_pick(args.nms_iou, nms.iou_threshold if nms else None, 0.6),
        detections_per_class=nms.max_detections_per_class if nms else 100,
        num_classes=cfg.num_classes,
        scales=settings.scales if settings else ssd.DEFAULT_SCALES,
    )


def _pick(flag: float | None, config: float | None, default: float) -> float:
    return flag if flag is not None else (config if config is not None else default)


def load_weights(args: argparse.Namespace, source: Source | None = None) -> SSDModel:
    source = source or Source(None, None)
    detector = build(_config(args, source.settings))
    if args.from_tflite is not None:
        _common.require_file(args.from_tflite, "TFLite model", "pass an existing .tflite file")
        recover(detector, read_graph(args.from_tflite))
    elif source.prefix is not None:
        load_checkpoint(detector, source.prefix)
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
    _check_args(args)
    if not args.verify_only:  # a bad calibration path fails before any download
        _calibration.check_sources(args.calibration)
    with tempfile.TemporaryDirectory(prefix="edgecam-ckpt-") as tmp:
        source = _ssd_source.resolve(args, Path(tmp))
        if source.verification is not None:
            print(source.describe())
        if args.verify_only:
            return 0
        frames = _calibration.load_frames(
            args.calibration, args.calibration_count, args.video_frames
        )
        return _convert(args, argv, source, frames)


def _check_args(args: argparse.Namespace) -> None:
    release = args.official is not None or args.tarball is not None
    if args.calibration_count < 1:
        raise UsageError(f"--calibration-count must be >= 1, got {args.calibration_count}")
    if args.report_images < 0:
        raise UsageError(f"--report-images must be >= 0, got {args.report_images}")
    if args.verify_only and not (release or args.checkpoint is not None):
        raise UsageError(
            "--verify-only checks a checkpoint: use --official, --tarball or --checkpoint"
        )
    if args.own_checkpoint and args.checkpoint is None:
        raise UsageError("--own-checkpoint goes with --checkpoint DIR")
    if (args.url is not None or args.cache is not None) and args.official is None:
        raise UsageError("--url and --cache go with --official NAME")
    if args.verify_only:
        return
    if not args.calibration:
        raise UsageError("int8 calibration needs data", "pass --calibration DIR_OR_VIDEO")
    if args.out is None and not release:
        raise UsageError("--out DIR is required", "the directory the model and its entry go to")


def _names(args: argparse.Namespace, cfg: SSDConfig, source: Source) -> tuple[str, str]:
    """(file stem, manifest name): the official release keeps the shipped manifest's name."""
    coco = "coco_" if cfg.num_classes == 90 else ""
    stem = args.name or f"{cfg.arch}_{coco}{cfg.size}_int8"
    release = source.release
    if args.name is not None or release is None:
        return stem, stem
    suffix = "" if cfg.size == release.size else f"_{cfg.size}"
    return stem, release.manifest_name + suffix


def _convert(
    args: argparse.Namespace,
    argv: Sequence[str] | None,
    source: Source,
    frames: list[_calibration.RGB],
) -> int:
    out = _common.check_out_dir(args.out or default_fetch_dir())
    detector = load_weights(args, source)
    _print_complexity(complexity_report(detector))
    cfg = detector.config
    stem, name = _names(args, cfg, source)
    opts = _postprocess(args, cfg, source.settings)
    pixels = _calibration.batch(frames, cfg.size, cfg.size, crop=False)
    images = _calibration.to_unit_range(pixels)
    report = source.meta is not None and args.report_images > 0
    if report and source.settings is not None and cfg.size != source.settings.height:
        log.info("no fidelity report: the reference graph runs at %d px", source.settings.height)
        report = False
    with tempfile.TemporaryDirectory(prefix="edgecam-ssd-") as tmp:
        float_path = out / f"{stem.removesuffix('_int8')}_float.tflite"
        if not args.float:
            float_path = Path(tmp) / float_path.name
        if args.float or report:
            float_path.write_bytes(convert(detector.model, detector.anchors, opts, None))
            if args.float:
                print(f"wrote {float_path} ({float_path.stat().st_size} bytes)")
        if args.bias_correction:
            _bias_correction.apply(detector.model, images)
        path = out / f"{stem}.tflite"
        path.write_bytes(convert(detector.model, detector.anchors, opts, images, args.io))
        print(f"wrote {path} ({path.stat().st_size} bytes)")
        entry = _entry(args, argv, name=name, path=path, cfg=cfg, source=source, n=len(frames))
        print(f"wrote {_common.write_manifest_entry(entry, out)}")
        if source.release is not None and entry.labels_table is not None:
            _install_labels(name, out)
        if report:
            from tools._ssd_fidelity import write_report

            assert source.meta is not None and source.prefix is not None
            checked = source.verification.to_json() if source.verification else None
            extra = {"postprocess": opts.attributes(), "checkpoint": checked}
            sample = pixels[: args.report_images]
            written = write_report(
                source.meta, source.prefix, float_path, path, sample, extra=extra
            )
            print(f"wrote {written}")
    return 0


def _install_labels(name: str, out: Path) -> None:
    """The label file beside the model, as `edgecam models fetch` gets it (HTTPS, sha256
    pinned in the manifest), so `edgecam run --model NAME` works right away."""
    from edgecam.errors import EdgecamError
    from edgecam.models.fetch import fetch

    try:
        outcome = fetch(name, dest=out, progress=False, models_dir=out)
    except EdgecamError as exc:
        log.warning("labels not installed (%s); run `edgecam models fetch %s` later", exc, name)
        return
    print(f"labels: {outcome.label_path} ({outcome.label_action})")


def _entry(
    args: argparse.Namespace,
    argv: Sequence[str] | None,
    *,
    name: str,
    path: Path,
    cfg: SSDConfig,
    source: Source,
    n: int,
) -> _common.ManifestEntry:
    from tools._convert import io_quantization

    v = source.verification
    if source.release is not None and v is not None:
        origin = (
            f"official {source.release.folder} checkpoint, verified (model.ckpt.index sha256 "
            f"{v.index_sha256}, {v.tensors} tensors CRC32C-checked)"
        )
    elif source.prefix is not None:
        origin = f"own checkpoint {source.prefix}"
    elif args.from_tflite is not None:
        origin = f"weights recovered from {args.from_tflite.name}"
    else:
        origin = "RANDOM weights (structure test only, detects nothing)"
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
    settings = source.settings.source if source.settings else "built-in defaults"
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
        f"configs), rebuilt in Keras 3 by tools/_ssd_model.py; settings from {settings}",
        origin=f"built by tools/convert_ssd.py: {origin}; calibrated on {n} frames; "
        f"{io_quantization(path.read_bytes())}",
        build=_common.command_line(argv, "convert_ssd.py"),
        paper=PAPERS[cfg.arch],
    )


if __name__ == "__main__":
    raise SystemExit(_common.run_cli(main, None))
