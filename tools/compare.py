"""Fidelity report: run converted models side by side with edgecam's own runtime.

Models are opened, preprocessed and decoded exactly as the app does (edgecam.runtime.interpreter,
edgecam.core.preprocess, edgecam.core.postprocess), so the numbers describe what a user will get.
The first model is the candidate; every other one is compared with it. Prints a summary
and writes JSON: ``python -m tools.compare --help``.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import numpy.typing as npt

from edgecam.core import postprocess, preprocess
from edgecam.errors import UsageError
from edgecam.runtime.interpreter import Runner
from edgecam.runtime.open import open_runner
from edgecam.types import Detections, Frame
from tools import _calibration, _common
from tools._tflite_weights import list_ops, non_int8_compute_ops

log = logging.getLogger("tools.compare")

MATCH_IOU = 0.7  # a reference box counts as found again at IoU >= this, same label


@dataclass(frozen=True)
class Sample:
    name: str
    frame: Frame


def load_samples(images: Sequence[Path], video: Path | None, video_frames: int) -> list[Sample]:
    """Asset-style inputs: every image of the directories, plus evenly spaced video frames."""
    samples: list[Sample] = []
    for directory in images:
        for path in _calibration.list_images(directory):
            samples.append(Sample(path.name, _frame(_calibration.read_rgb(path), len(samples))))
    if video is not None:
        for i, rgb in enumerate(_calibration.sample_video(video, video_frames)):
            samples.append(Sample(f"{video.name}#{i}", _frame(rgb, len(samples))))
    if not samples:
        raise UsageError("nothing to compare on", "pass --images DIR and/or --video FILE")
    return samples


def _frame(rgb: npt.NDArray[np.uint8], seq: int) -> Frame:
    return Frame(pixels=rgb, seq=seq, timestamp=0.0, monotonic=0.0, source="compare")


def is_detector(runner: Runner) -> bool:
    return postprocess.find_postprocess_outputs(runner.outputs) is not None


def describe(runner: Runner) -> dict[str, Any]:
    """File size, op counts, float-computing ops, I/O types: the "is it really int8" part."""
    data = runner.model_path.read_bytes()
    ops = list_ops(data)
    return {
        "file": str(runner.model_path),
        "size_bytes": len(data),
        "runtime": f"{runner.runtime} {runner.runtime_version}",
        "ops": dict(Counter(op.name for op in ops)),
        "float_ops": sorted({op.name for op in ops if op.float_io}),
        "non_int8_compute_ops": non_int8_compute_ops(ops),
        "inputs": [_io(t) for t in runner.inputs],
        "outputs": [_io(t) for t in runner.outputs],
    }


def _io(t: Any) -> dict[str, Any]:
    return {
        "name": t.name,
        "shape": list(t.shape),
        "dtype": str(t.dtype),
        "scale": t.scale,
        "zero_point": t.zero_point,
    }


def run_classifier(runner: Runner, samples: Sequence[Sample]) -> npt.NDArray[np.float32]:
    """(N, C) probabilities, as edgecam's classify() sees them (softmax if logits)."""
    spec = preprocess.InputSpec.from_tensor(runner.inputs[0], "crop")
    rows = []
    for s in samples:
        tensor, _ = preprocess.make_tensor(s.frame, spec)
        out = runner.run(tensor)[0]
        scores = postprocess.dequantize(out, runner.outputs[0]).reshape(-1)
        if not _probabilities(scores):
            e = np.exp(scores - scores.max())
            scores = e / e.sum()
        rows.append(scores.astype(np.float32))
    return np.stack(rows)


def run_detector(
    runner: Runner, samples: Sequence[Sample], labels: Sequence[str], threshold: float
) -> list[Detections]:
    spec = preprocess.InputSpec.from_tensor(runner.inputs[0], "stretch")
    found = []
    for s in samples:
        tensor, geometry = preprocess.make_tensor(s.frame, spec)
        outs = runner.run(tensor)
        found.append(
            postprocess.detect(
                outs, runner.outputs, labels, label_offset=0, threshold=threshold, geometry=geometry
            )
        )
    return found


def _probabilities(scores: npt.NDArray[np.float32]) -> bool:
    """Softmax output, not logits. No test on the sum: a quantized softmax over 1001 classes
    rounds most small probabilities to 0 and can lose far more than a few % of its mass."""
    return bool(scores.min() >= 0.0 and scores.max() <= 1.0)


def classifier_agreement(
    cand: npt.NDArray[np.float32], ref: npt.NDArray[np.float32]
) -> dict[str, float]:
    """Top-1 / top-5 agreement and probability deltas; 1000- vs 1001-class outputs aligned."""
    cand, ref = _align_classes(cand, ref)
    top1_r = ref.argmax(1)
    # Quantized outputs can tie exactly at the top; a tie cannot be ordered, so the models
    # agree when their sets of maximal classes intersect.
    best_c = cand >= cand.max(axis=1, keepdims=True)
    best_r = ref >= ref.max(axis=1, keepdims=True)
    agree = np.any(best_c & best_r, axis=1)
    top5_c = np.argsort(-cand, axis=1)[:, :5]
    top5_r = np.argsort(-ref, axis=1)[:, :5]
    overlap = [len(set(a) & set(b)) / 5.0 for a, b in zip(top5_c, top5_r, strict=True)]
    rows = np.arange(len(cand))
    return {
        "top1_agreement": float(np.mean(agree)),
        "top1_ties": int(np.sum((best_c.sum(1) > 1) | (best_r.sum(1) > 1))),
        "top1_in_top5": float(np.mean([r in c for r, c in zip(top1_r, top5_c, strict=True)])),
        "top5_overlap": float(np.mean(overlap)),
        "mean_abs_dprob_top1": float(np.mean(np.abs(cand[rows, top1_r] - ref[rows, top1_r]))),
        "max_abs_dprob": float(np.max(np.abs(cand - ref))),
    }


def _align_classes(
    a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    if a.shape[1] == b.shape[1] + 1:
        return a[:, 1:], b  # drop the background column of a TF-slim model
    if b.shape[1] == a.shape[1] + 1:
        return a, b[:, 1:]
    if a.shape[1] != b.shape[1]:
        raise UsageError(f"cannot compare a {a.shape[1]}-class with a {b.shape[1]}-class model")
    return a, b


def _iou(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, float(x1 - x0)) * max(0.0, float(y1 - y0))
    union = float((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])) - inter
    return inter / union if union > 0 else 0.0


def detector_agreement(
    cand: Sequence[Detections], ref: Sequence[Detections], iou_min: float = MATCH_IOU
) -> dict[str, Any]:
    """Share of reference detections found again (same class, IoU >= iou_min), greedily."""
    matched, total, extra = 0, 0, 0
    ious: list[float] = []
    dscores: list[float] = []
    same_image = 0
    for c, r in zip(cand, ref, strict=True):
        used: set[int] = set()
        for j in np.argsort(-r.score):
            total += 1
            best, best_iou = -1, iou_min
            for i in range(len(c)):
                if i in used or c.class_id[i] != r.class_id[j]:
                    continue
                iou = _iou(c.xyxy[i], r.xyxy[j])
                if iou >= best_iou:
                    best, best_iou = i, iou
            if best >= 0:
                used.add(best)
                matched += 1
                ious.append(best_iou)
                dscores.append(abs(float(c.score[best] - r.score[j])))
        extra += len(c) - len(used)
        same_image += Counter(c.label) == Counter(r.label)
    return {
        "reference_detections": total,
        "found_again": matched,
        "recall": matched / total if total else 1.0,
        "extra_detections": extra,
        "mean_iou": statistics.fmean(ious) if ious else None,
        "mean_abs_dscore": statistics.fmean(dscores) if dscores else None,
        "max_abs_dscore": max(dscores) if dscores else None,
        "images_with_same_labels": same_image / len(ref) if ref else 1.0,
    }


def compare(
    models: dict[str, Path],
    samples: Sequence[Sample],
    *,
    labels: Sequence[str] = (),
    threshold: float = 0.5,
    threads: int | None = None,
) -> dict[str, Any]:
    """Run every model on every sample; the first model is compared with each other one."""
    runners = {
        role: open_runner(path, num_threads=threads, trusted=True) for role, path in models.items()
    }
    detector = is_detector(next(iter(runners.values())))
    report: dict[str, Any] = {
        "task": "detection" if detector else "classification",
        "samples": [s.name for s in samples],
        "models": {},
        "agreement": {},
    }
    results: dict[str, Any] = {}
    for role, runner in runners.items():
        info = describe(runner)
        times: list[float] = []
        if detector:
            results[role] = run_detector(runner, samples, labels, threshold)
        else:
            results[role] = run_classifier(runner, samples)
        for _ in range(10):  # invoke time on the last input, after warm-up by the samples
            runner.invoke()
            times.append(runner.last_invoke_ms)
        info["invoke_ms_mean"] = statistics.fmean(times)
        info["invoke_ms_median"] = statistics.median(times)
        report["models"][role] = info
    roles = list(runners)
    first = roles[0]
    for other in roles[1:]:
        key = f"{first}_vs_{other}"
        if detector:
            report["agreement"][key] = detector_agreement(results[first], results[other])
            report["agreement"][key]["threshold"] = threshold
        else:
            report["agreement"][key] = classifier_agreement(results[first], results[other])
    if detector:
        report["detections"] = {
            role: [_det_json(d) for d in dets] for role, dets in results.items()
        }
    else:
        report["top1"] = {
            role: [int(i) for i in probs.argmax(1)] for role, probs in results.items()
        }
    return report


def _det_json(d: Detections) -> list[dict[str, Any]]:
    return [
        {
            "label": d.label[i],
            "class_id": int(d.class_id[i]),
            "score": round(float(d.score[i]), 4),
            "xyxy": [round(float(v), 4) for v in d.xyxy[i]],
        }
        for i in range(len(d))
    ]


def summary(report: dict[str, Any]) -> str:
    lines = [f"task: {report['task']}, {len(report['samples'])} inputs"]
    for role, m in report["models"].items():
        ins = ", ".join(f"{t['dtype']}{t['shape']}" for t in m["inputs"])
        outs = ", ".join(f"{t['dtype']}{t['shape']}" for t in m["outputs"])
        lines.append(
            f"  {role}: {m['size_bytes']} B, {sum(m['ops'].values())} ops, "
            f"invoke {m['invoke_ms_median']:.2f} ms, in {ins}, out {outs}, "
            f"non-int8 compute ops: {', '.join(m['non_int8_compute_ops']) or 'none'}"
        )
    for key, agr in report["agreement"].items():
        vals = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in agr.items()
        )
        lines.append(f"  {key}: {vals}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="compare", description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, required=True, help="candidate (int8) .tflite")
    p.add_argument("--float", type=Path, dest="float_model", help="float reference .tflite")
    p.add_argument("--reference", type=Path, help="prebuilt reference .tflite")
    p.add_argument("--images", type=Path, action="append", default=[], help="image directory")
    p.add_argument("--video", type=Path, help="video file to sample frames from")
    p.add_argument("--video-frames", type=int, default=10, help="frames sampled from --video")
    p.add_argument("--labels", type=Path, help="label file (detectors: for readable output)")
    p.add_argument("--threshold", type=float, default=0.5, help="detector score threshold")
    p.add_argument("--threads", type=int, default=None, help="interpreter threads")
    p.add_argument("--json", type=Path, help="write the full report here")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    models = {"int8": args.model}
    if args.float_model is not None:
        models["float"] = args.float_model
    if args.reference is not None:
        models["reference"] = args.reference
    for path in models.values():
        _common.require_file(path, "model", "pass an existing .tflite file")
    labels = _common.read_labels(args.labels) if args.labels else []
    samples = load_samples(args.images, args.video, args.video_frames)
    report = compare(models, samples, labels=labels, threshold=args.threshold, threads=args.threads)
    print(summary(report))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(_common.run_cli(main, None))
