"""SSD anchors, box coding and NMS in plain numpy.

Needed for detectors exported without the ``TFLite_Detection_PostProcess`` op (raw box
encodings + class scores): edgecam must then do what that op does. The anchor layout and the
box coder reproduce the TF object-detection API (``ssd_anchor_generator`` through
``multiple_grid_anchor_generator.create_ssd_anchors``, ``faster_rcnn_box_coder``) so the
decoded boxes match what the model was trained against. ``tools/`` also uses this module to
bake anchors into converted models.

Box conventions: anchors are (N, 4) ``[ycenter, xcenter, height, width]``, boxes are (N, 4)
``[ymin, xmin, ymax, xmax]``; both normalized to the model input (0..1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
IndexArray = npt.NDArray[np.intp]

#: (y, x, h, w) scale factors of the TF OD API faster-rcnn box coder used by every SSD config.
DEFAULT_SCALES: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)
#: Aspect ratios of the reference SSD-MobileNet configs (in the order the configs list them).
DEFAULT_ASPECT_RATIOS: tuple[float, ...] = (1.0, 2.0, 0.5, 3.0, 1.0 / 3.0)


def layer_scales(num_layers: int, min_scale: float, max_scale: float) -> list[float]:
    """Per-layer anchor scales, linear from min to max, plus a trailing 1.0.

    The trailing 1.0 is only the "next scale" of the last layer, used for its interpolated box.
    """
    if num_layers == 1:
        return [min_scale, 1.0]
    step = (max_scale - min_scale) / (num_layers - 1)
    return [min_scale + step * i for i in range(num_layers)] + [1.0]


def box_specs(
    num_layers: int,
    *,
    min_scale: float = 0.2,
    max_scale: float = 0.95,
    aspect_ratios: Sequence[float] = DEFAULT_ASPECT_RATIOS,
    interpolated_scale_aspect_ratio: float = 1.0,
    reduce_boxes_in_lowest_layer: bool = True,
) -> list[list[tuple[float, float]]]:
    """(scale, aspect ratio) of every box placed at one grid cell, per layer.

    The lowest layer of the reference configs gets 3 fixed boxes (a small 0.1 square and the
    layer scale at 2:1 and 1:2); the others get one box per aspect ratio plus one square box
    at the geometric mean of this and the next layer's scale.
    """
    scales = layer_scales(num_layers, min_scale, max_scale)
    specs: list[list[tuple[float, float]]] = []
    for layer in range(num_layers):
        scale, scale_next = scales[layer], scales[layer + 1]
        if layer == 0 and reduce_boxes_in_lowest_layer:
            specs.append([(0.1, 1.0), (scale, 2.0), (scale, 0.5)])
            continue
        layer_specs = [(scale, float(ratio)) for ratio in aspect_ratios]
        if interpolated_scale_aspect_ratio > 0.0:
            layer_specs.append((math.sqrt(scale * scale_next), interpolated_scale_aspect_ratio))
        specs.append(layer_specs)
    return specs


def generate_anchors(
    feature_map_sizes: Sequence[tuple[int, int]],
    *,
    min_scale: float = 0.2,
    max_scale: float = 0.95,
    aspect_ratios: Sequence[float] = DEFAULT_ASPECT_RATIOS,
    interpolated_scale_aspect_ratio: float = 1.0,
    reduce_boxes_in_lowest_layer: bool = True,
    image_size: tuple[int, int] | None = None,
) -> FloatArray:
    """SSD anchors (N, 4) ``[ycenter, xcenter, h, w]``, normalized, in the model's output order.

    Order: layer by layer, then grid rows (y), grid columns (x), then box spec — the order the
    box predictor concatenates its outputs in. ``feature_map_sizes`` are (height, width) from
    the finest to the coarsest layer. ``image_size`` (height, width) only matters for
    non-square inputs: the base anchor is then normalized to the shorter side so that
    aspect-ratio-1 anchors stay square in pixels.
    """
    specs = box_specs(
        len(feature_map_sizes),
        min_scale=min_scale,
        max_scale=max_scale,
        aspect_ratios=aspect_ratios,
        interpolated_scale_aspect_ratio=interpolated_scale_aspect_ratio,
        reduce_boxes_in_lowest_layer=reduce_boxes_in_lowest_layer,
    )
    base_h = base_w = 1.0
    if image_size is not None:
        im_h, im_w = image_size
        base_h, base_w = min(im_h, im_w) / im_h, min(im_h, im_w) / im_w
    layers = [
        _tile_layer(size, layer_specs, base_h, base_w)
        for size, layer_specs in zip(feature_map_sizes, specs, strict=True)
    ]
    return np.concatenate(layers, axis=0).astype(np.float32)


def _tile_layer(
    grid: tuple[int, int], specs: list[tuple[float, float]], base_h: float, base_w: float
) -> npt.NDArray[np.float64]:
    """Anchors of one layer: every box spec centred on every cell of a (rows, cols) grid."""
    rows, cols = grid
    scales = np.array([s for s, _ in specs], np.float64)
    ratio_sqrt = np.sqrt(np.array([r for _, r in specs], np.float64))
    heights = scales / ratio_sqrt * base_h
    widths = scales * ratio_sqrt * base_w
    # Cell centres: stride 1/rows, offset half a stride (TF OD API default when none given).
    y = (np.arange(rows, dtype=np.float64) + 0.5) / rows
    x = (np.arange(cols, dtype=np.float64) + 0.5) / cols
    k = len(specs)
    out = np.empty((rows, cols, k, 4), np.float64)
    out[..., 0] = y[:, None, None]
    out[..., 1] = x[None, :, None]
    out[..., 2] = heights[None, None, :]
    out[..., 3] = widths[None, None, :]
    return out.reshape(-1, 4)


def reference_feature_map_sizes(
    height: int, width: int, num_layers: int = 6
) -> list[tuple[int, int]]:
    """Feature-map sizes of the reference SSD-MobileNet (V1/V2/SSDLite) heads for an input.

    Their first two maps are the backbone's stride-16 and stride-32 outputs; each extra layer
    is a stride-2 SAME conv, so every size is ceil(previous / 2): 300 → 19,10,5,3,2,1 and
    320 → 20,10,5,3,2,1.
    """
    sizes = [(math.ceil(height / 16), math.ceil(width / 16))]
    while len(sizes) < num_layers:
        h, w = sizes[-1]
        sizes.append((math.ceil(h / 2), math.ceil(w / 2)))
    return sizes


def decode_boxes(
    box_encodings: npt.ArrayLike,
    anchors: npt.ArrayLike,
    scales: Sequence[float] = DEFAULT_SCALES,
) -> FloatArray:
    """Faster-RCNN box decoding: ``[ty, tx, th, tw]`` + anchors → ``[ymin, xmin, ymax, xmax]``."""
    enc = np.asarray(box_encodings, np.float32).reshape(-1, 4)
    anc = np.asarray(anchors, np.float32).reshape(-1, 4)
    sy, sx, sh, sw = (np.float32(s) for s in scales)
    yc = enc[:, 0] / sy * anc[:, 2] + anc[:, 0]
    xc = enc[:, 1] / sx * anc[:, 3] + anc[:, 1]
    half_h = 0.5 * np.exp(enc[:, 2] / sh) * anc[:, 2]
    half_w = 0.5 * np.exp(enc[:, 3] / sw) * anc[:, 3]
    boxes: FloatArray = np.stack([yc - half_h, xc - half_w, yc + half_h, xc + half_w], axis=1)
    return boxes.astype(np.float32)


def iou_one_to_many(box: npt.NDArray[Any], boxes: npt.NDArray[Any]) -> FloatArray:
    """IoU of one ``[y0, x0, y1, x1]`` box with (M, 4) boxes; 0 where the union is empty."""
    y0 = np.maximum(box[0], boxes[:, 0])
    x0 = np.maximum(box[1], boxes[:, 1])
    y1 = np.minimum(box[2], boxes[:, 2])
    x1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(y1 - y0, 0, None) * np.clip(x1 - x0, 0, None)
    area = max(float((box[2] - box[0]) * (box[3] - box[1])), 0.0)
    areas = np.clip((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), 0, None)
    union = area + areas - inter
    safe = np.where(union > 0, union, 1.0)
    iou: FloatArray = np.where(union > 0, inter / safe, 0.0).astype(np.float32)
    return iou


def nms(
    boxes: npt.ArrayLike, scores: npt.ArrayLike, iou_threshold: float, max_output: int
) -> IndexArray:
    """Greedy NMS: indices of kept boxes, best score first.

    A box is dropped when its IoU with an already kept, higher-scoring box exceeds
    ``iou_threshold`` (same rule as TFLite's NMS). Ties keep the lower index first.
    """
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    s = np.asarray(scores, np.float32).reshape(-1)
    order = np.argsort(-s, kind="stable")
    keep: list[int] = []
    while order.size and len(keep) < max_output:
        best = int(order[0])
        keep.append(best)
        rest = order[1:]
        order = rest[iou_one_to_many(b[best], b[rest]) <= iou_threshold]
    return np.asarray(keep, np.intp)


def _sigmoid(x: npt.NDArray[np.float32]) -> FloatArray:
    # tanh form: no overflow warning for large negative logits.
    out: FloatArray = (0.5 * (1.0 + np.tanh(0.5 * x))).astype(np.float32)
    return out


def decode_raw_ssd(
    box_encodings: npt.ArrayLike,
    class_logits: npt.ArrayLike,
    anchors: npt.ArrayLike,
    *,
    score_threshold: float,
    iou_threshold: float = 0.6,
    max_detections: int = 100,
    scores_are_logits: bool = True,
    has_background: bool = True,
    class_agnostic: bool = False,
    max_per_class: int = 100,
    scales: Sequence[float] = DEFAULT_SCALES,
) -> tuple[FloatArray, npt.NDArray[np.int32], FloatArray]:
    """Decode raw SSD head outputs into (boxes ``[ymin,xmin,ymax,xmax]``, class ids, scores).

    box_encodings: (N, 4); class_logits: (N, C) with the background column 0 when
    ``has_background``. Class ids returned are 0-based without background, like the
    postprocess op's. Default is per-class NMS (the op's "regular" NMS);
    ``class_agnostic=True`` keeps only each anchor's best class and runs one NMS over all
    anchors (the op's fast NMS, used by most TF1 exports). Results are sorted by score.
    """
    cls = np.asarray(class_logits, np.float32)
    cls = cls.reshape(-1, cls.shape[-1])
    enc = np.asarray(box_encodings, np.float32).reshape(-1, 4)
    anc = np.asarray(anchors, np.float32).reshape(-1, 4)
    if not enc.shape[0] == cls.shape[0] == anc.shape[0]:
        raise ValueError(
            f"decode_raw_ssd: box encodings {enc.shape}, class scores {cls.shape} and anchors "
            f"{anc.shape} must have the same number of rows"
        )
    if has_background:
        cls = cls[:, 1:]
    scores = _sigmoid(cls) if scores_are_logits else cls
    anchor_idx, class_idx = _candidates(scores, score_threshold, class_agnostic)
    cand_scores = scores[anchor_idx, class_idx].astype(np.float32)
    boxes = decode_boxes(enc[anchor_idx], anc[anchor_idx], scales)
    if class_agnostic:
        kept = nms(boxes, cand_scores, iou_threshold, max_detections)
    else:
        kept = _per_class_nms(boxes, cand_scores, class_idx, iou_threshold, max_per_class)
        kept = kept[np.argsort(-cand_scores[kept], kind="stable")][:max_detections]
    return boxes[kept], class_idx[kept].astype(np.int32), cand_scores[kept]


def _candidates(
    scores: FloatArray, threshold: float, best_class_only: bool
) -> tuple[IndexArray, IndexArray]:
    """(anchor, class) pairs scoring at least ``threshold``; one per anchor if best only."""
    if best_class_only and scores.shape[1]:
        best = np.argmax(scores, axis=1)
        anchors = np.flatnonzero(scores[np.arange(len(scores)), best] >= threshold)
        return anchors, best[anchors]
    anchor_idx, class_idx = np.nonzero(scores >= threshold)
    return anchor_idx, class_idx


def _per_class_nms(
    boxes: FloatArray,
    scores: FloatArray,
    class_idx: npt.NDArray[np.intp],
    iou_threshold: float,
    max_per_class: int,
) -> IndexArray:
    """Indices (into the candidate arrays) kept by NMS run separately for each class."""
    kept: list[IndexArray] = []
    for c in np.unique(class_idx):
        members = np.flatnonzero(class_idx == c)
        kept.append(members[nms(boxes[members], scores[members], iou_threshold, max_per_class)])
    return np.concatenate(kept) if kept else np.zeros(0, np.intp)
