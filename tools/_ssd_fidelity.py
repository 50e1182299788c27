"""Converted SSD vs the checkpoint's own TF1 graph: raw outputs, anchors, detections, SNR.

Why: "the .tflite loads and detects something" proves little; what a user needs to know is
whether it computes what the checkpoint computes. The reference graph (model.ckpt.meta with
the checkpoint restored) gives the raw box encodings, class logits, anchors and its own
per-class-NMS detections on the same pixels; the float model must reproduce them to float
rounding, and the int8 model's distance from the float one is its quantization error (SNR).
The op's inputs are read from the interpreter (``preserve_all_tensors``) through edgecam's
own runtime and input tables, so the numbers describe what edgecam will run.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edgecam.core import postprocess, preprocess, ssd
from edgecam.runtime.interpreter import resolve_runtime
from edgecam.runtime.open import open_runner
from tools._convert import POSTPROCESS_OP
from tools._reference_graph import ReferenceGraph, ReferenceOutputs
from tools._ssd_export import set_postprocess_options
from tools._tflite_weights import read_graph

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]
#: A reference detection is found again: same class, IoU >= this, |Δscore| <= SCORE_TOL.
MATCH_IOU, SCORE_TOL, TOP = 0.9, 0.02, 10
#: Looser rule for the int8 model (quantization moves boxes and scores).
INT8_IOU = 0.5


@dataclass(frozen=True)
class TFLiteOutputs:
    """The postprocess op's inputs and outputs for a batch of images (boxes not clipped)."""

    box_encodings: FloatArray  # (N, A, 4)
    scores: FloatArray  # (N, A, C + 1) after the sigmoid, background first
    anchors: FloatArray  # (A, 4) [yc, xc, h, w]
    boxes: FloatArray  # (N, D, 4) [ymin, xmin, ymax, xmax] as the op returns them
    classes: npt.NDArray[np.int32]
    det_scores: FloatArray
    count: npt.NDArray[np.int32]


def run_tflite(path: Path, images: npt.NDArray[np.uint8], threads: int = 2) -> TFLiteOutputs:
    """Run a converted detector on (N, S, S, 3) uint8 RGB images at its input size."""
    graph = read_graph(path)
    pp = [i for i, t in enumerate(graph.op_types) if t == POSTPROCESS_OP]
    if len(pp) != 1:
        raise ValueError(f"{path} has {len(pp)} {POSTPROCESS_OP} ops, expected 1")
    names = [graph.tensor_names[i] for i in graph.op_inputs[pp[0]]]
    runtime = resolve_runtime("auto")[0]
    runner = open_runner(
        path, runtime=runtime, num_threads=threads, trusted=True, preserve_all_tensors=True
    )
    spec = preprocess.InputSpec.from_tensor(runner.inputs[0], "stretch")
    lut = preprocess.input_lut(spec)
    layout = postprocess.find_postprocess_outputs(runner.outputs)
    if layout is None:
        raise ValueError(f"{path}: no postprocess outputs")
    rows: list[list[npt.NDArray[Any]]] = []
    for image in images:
        outs = runner.run(lut[image][None])
        raw = []
        for name in names:
            info, value = runner.read_tensor(name)
            raw.append(postprocess.dequantize(value, info))
        rows.append([*raw, *(outs[i] for i in (layout.boxes, layout.classes, layout.scores))])
        rows[-1].append(outs[layout.count])
    n = len(images)
    return TFLiteOutputs(
        box_encodings=np.stack([r[0].reshape(-1, 4) for r in rows]),
        scores=np.stack([r[1].reshape(r[1].shape[-2], -1) for r in rows]),
        anchors=rows[0][2].reshape(-1, 4).astype(np.float32),
        boxes=np.stack([r[3].reshape(-1, 4) for r in rows]).astype(np.float32),
        classes=np.rint(np.stack([r[4].reshape(-1) for r in rows])).astype(np.int32),
        det_scores=np.stack([r[5].reshape(-1) for r in rows]).astype(np.float32),
        count=np.array([int(r[6].reshape(-1)[0]) for r in rows], np.int32).reshape(n),
    )


def sigmoid(logits: npt.ArrayLike) -> FloatArray:
    x = np.asarray(logits, np.float64)
    out: FloatArray = (0.5 * (1.0 + np.tanh(0.5 * x))).astype(np.float32)
    return out


def snr_db(reference: npt.ArrayLike, test: npt.ArrayLike) -> float:
    """10·log10(Σ ref² / Σ (test − ref)²); inf when identical."""
    ref = np.asarray(reference, np.float64)
    noise = float(((np.asarray(test, np.float64) - ref) ** 2).sum())
    return math.inf if noise == 0.0 else 10.0 * math.log10(float((ref**2).sum()) / noise)


def match_detections(
    ref: ReferenceOutputs,
    ours: TFLiteOutputs,
    *,
    iou: float = MATCH_IOU,
    score_tol: float | None = SCORE_TOL,
    top: int = TOP,
) -> dict[str, Any]:
    """How many of the reference's top detections per image ours finds again.

    Ours are clipped to the image first, as the reference graph clips its boxes (the TFLite
    op does not). Each of our detections can match one reference detection.
    """
    found = total = 0
    ious: list[float] = []
    per_image = []
    for i in range(len(ref.count)):
        k = min(top, int(ref.count[i]))
        mine = np.clip(ours.boxes[i, : int(ours.count[i])], 0.0, 1.0)
        used = np.zeros(len(mine), bool)
        hits = 0
        for j in range(k):
            same = (ours.classes[i, : len(mine)] == ref.classes[i, j]) & ~used
            if score_tol is not None:
                same &= np.abs(ours.det_scores[i, : len(mine)] - ref.scores[i, j]) <= score_tol
            if not same.any() or not len(mine):
                continue
            overlap = np.where(same, ssd.iou_one_to_many(ref.boxes[i, j], mine), -1.0)
            best = int(np.argmax(overlap))
            if overlap[best] >= iou:
                used[best] = True
                hits += 1
                ious.append(float(overlap[best]))
        per_image.append([hits, k])
        found += hits
        total += k
    return {
        "found": found,
        "of": total,
        "per_image": per_image,
        "min_iou": min(ious) if ious else None,
        "rule": f"same class, IoU >= {iou}"
        + (f", |score diff| <= {score_tol}" if score_tol is not None else ""),
    }


def raw_differences(ref: ReferenceOutputs, ours: TFLiteOutputs) -> dict[str, float]:
    return {
        "box_encodings_max_abs_diff": float(np.abs(ours.box_encodings - ref.box_encodings).max()),
        "box_encodings_max_abs": float(np.abs(ref.box_encodings).max()),
        "scores_max_abs_diff": float(np.abs(ours.scores - sigmoid(ref.class_logits)).max()),
        "anchors_max_abs_diff": float(np.abs(ours.anchors - ref.anchors).max()),
    }


def per_class_nms_variant(path: Path, out: Path) -> Path:
    """The same model with the reference graph's NMS: per class ("regular"), as in
    ``batch_non_max_suppression``; everything else unchanged."""
    out.write_bytes(set_postprocess_options(path.read_bytes(), {"use_regular_nms": True}))
    return out


def fidelity_report(
    reference: ReferenceGraph,
    float_model: Path,
    int8_model: Path,
    images: npt.NDArray[np.uint8],
    threads: int = 2,
) -> dict[str, Any]:
    """The numbers of the closing note, for one set of images at the model's input size."""
    ref = reference.run(images)
    flt = run_tflite(float_model, images, threads)
    q = run_tflite(int8_model, images, threads)
    with tempfile.TemporaryDirectory(prefix="edgecam-fidelity-") as tmp:
        regular = run_tflite(
            per_class_nms_variant(float_model, Path(tmp) / "regular.tflite"), images, threads
        )
    raw_outside = int(((flt.boxes < 0.0) | (flt.boxes > 1.0)).any(axis=2).sum())
    return {
        "images": len(images),
        "float_vs_reference": {
            **raw_differences(ref, flt),
            "detections_model_settings": match_detections(ref, flt),
            "detections_per_class_nms": match_detections(ref, regular),
            "op_boxes_outside_image": raw_outside,
        },
        "int8_vs_float": {
            "box_encodings_snr_db": snr_db(flt.box_encodings, q.box_encodings),
            "scores_snr_db": snr_db(flt.scores, q.scores),
        },
        "int8_vs_reference": {
            "detections_model_settings": match_detections(ref, q, iou=INT8_IOU, score_tol=None),
        },
    }


def summary_lines(report: dict[str, Any]) -> list[str]:
    f, q = report["float_vs_reference"], report["int8_vs_float"]
    dm, dr = f["detections_model_settings"], f["detections_per_class_nms"]
    qd = report["int8_vs_reference"]["detections_model_settings"]
    return [
        f"fidelity on {report['images']} images vs the checkpoint's own TF graph:",
        f"  float: box encodings max |diff| {f['box_encodings_max_abs_diff']:.2g} "
        f"(range ±{f['box_encodings_max_abs']:.3g}), scores {f['scores_max_abs_diff']:.2g}, "
        f"anchors {f['anchors_max_abs_diff']:.2g}",
        f"  float: top-{TOP} detections found again {dm['found']}/{dm['of']} with the model's "
        f"NMS, {dr['found']}/{dr['of']} with per-class NMS ({dm['rule']})",
        f"  int8 vs float SNR: box encodings {q['box_encodings_snr_db']:.1f} dB, "
        f"scores {q['scores_snr_db']:.1f} dB; int8 detections {qd['found']}/{qd['of']} "
        f"({qd['rule']})",
    ]


def write_report(
    meta: Path,
    prefix: Path,
    float_model: Path,
    int8_model: Path,
    images: npt.NDArray[np.uint8],
    *,
    extra: dict[str, Any],
) -> Path:
    """Run the checkpoint's own graph, print the summary, write ``<model>_fidelity.json``."""
    with ReferenceGraph(meta) as reference:
        reference.restore(str(prefix))
        report = fidelity_report(reference, float_model, int8_model, images)
    report = {"model": int8_model.name, **report, **extra}
    for line in summary_lines(report):
        print(line)
    path = int8_model.with_name(f"{int8_model.stem}_fidelity.json")
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return path
