"""Raw model outputs → Classification / Detections. Pure numpy, no I/O.

Outputs are identified by name and shape, never by list position: the same
``TFLite_Detection_PostProcess`` op is listed as (boxes, classes, scores, count) by TF1
exports but e.g. as (scores, boxes, count, classes) by TF2 exports, whose tensors are named
after the SavedModel signature instead of the op.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from edgecam.core import ssd
from edgecam.errors import ModelError
from edgecam.types import Classification, Detections, TensorInfo

if TYPE_CHECKING:
    from edgecam.core.preprocess import Geometry

#: |sum - 1| above which a float output in [0, 1] is treated as logits, not probabilities.
PROB_SUM_TOLERANCE = 0.01

# Op output names. TF1 (export_tflite_ssd_graph): the op's own outputs, in the op's order.
_TF1_SUFFIX = {"": "boxes", ":1": "classes", ":2": "scores", ":3": "count"}
# TF2 (export_tflite_graph_tf2 + SavedModel converter): outputs are the signature's
# StatefulPartitionedCall:N with N = 0 count, 1 scores, 2 classes, 3 boxes (listed 1,3,0,2).
_TF2_SUFFIX = {":0": "count", ":1": "scores", ":2": "classes", ":3": "boxes"}


def dequantize(values: npt.NDArray[Any], info: TensorInfo) -> npt.NDArray[np.float32]:
    """Real values of an output: (q - zero_point) * scale, or a float32 view of floats."""
    if info.scale:
        real: npt.NDArray[np.float32] = (values.astype(np.float32) - info.zero_point) * np.float32(
            info.scale
        )
        return real
    return values.astype(np.float32, copy=False)


def _label(labels: Sequence[str], index: int) -> str:
    """Never fail per frame on a short label file (it is validated at load time)."""
    return labels[index] if 0 <= index < len(labels) else f"class {index}"


def check_labels(num_outputs: int, labels: Sequence[str], label_offset: int, what: str) -> None:
    """ModelError if class ids 0..num_outputs-1 shifted by the offset fall outside the labels."""
    if num_outputs + label_offset > len(labels):
        raise ModelError(
            f"{what}: model has {num_outputs} classes but the label file has {len(labels)} "
            f"lines (label offset {label_offset})",
            hint="use the label file that belongs to this model or fix label_offset",
        )


def classify(
    output: npt.NDArray[Any],
    info: TensorInfo,
    labels: Sequence[str],
    *,
    label_offset: int,
    top_k: int,
    threshold: float = 0.0,
) -> Classification:
    """Top-k of a classifier output (1, C) or (C,), best first, scores as probabilities."""
    scores = dequantize(np.asarray(output), info).reshape(-1)
    if scores.size and not _is_probability_output(scores, info):
        shifted = np.exp(scores - scores.max())
        scores = (shifted / shifted.sum()).astype(np.float32)
    k = min(max(top_k, 0), scores.size)
    top = np.argpartition(-scores, k - 1)[:k] if k else np.zeros(0, np.intp)
    top = top[np.argsort(-scores[top], kind="stable")]
    top = top[scores[top] >= threshold]
    return Classification(
        class_id=top.astype(np.int32),
        score=scores[top].astype(np.float32),
        label=tuple(_label(labels, int(i) + label_offset) for i in top),
    )


def _is_probability_output(scores: npt.NDArray[np.float32], info: TensorInfo) -> bool:
    """True for softmax/sigmoid outputs, which must not be softmaxed again.

    A quantized output is one when its representable range lies within [0, 1] (TFLite
    quantizes softmax as scale 1/256 with zero point 0 for uint8, -128 for int8). Its values
    need not sum to 1: rounding the many tiny classes to 0 loses up to ~45 % of the mass on
    uncertain images (measured on the assets). A float output is one when it is in [0, 1]
    and sums to 1.
    """
    if info.scale:
        limits = np.iinfo(info.dtype) if info.dtype.kind in "iu" else None
        if limits is not None:
            low = (limits.min - info.zero_point) * info.scale
            high = (limits.max - info.zero_point) * info.scale
            if low >= 0.0 and high <= 1.0 + 1e-6:
                return True
    in_range = scores.min() >= 0.0 and scores.max() <= 1.0
    return bool(in_range and abs(float(scores.sum()) - 1.0) <= PROB_SUM_TOLERANCE)


@dataclass(frozen=True)
class PostprocessLayout:
    """Indices into the model outputs of the four TFLite_Detection_PostProcess tensors."""

    boxes: int
    classes: int
    scores: int
    count: int


def _role_from_name(name: str) -> str | None:
    base, sep, suffix = name.rpartition(":")
    base, suffix = (base, sep + suffix) if sep else (name, "")
    if base.endswith("TFLite_Detection_PostProcess"):
        return _TF1_SUFFIX.get(suffix)
    if base.endswith("StatefulPartitionedCall"):
        return _TF2_SUFFIX.get(suffix)
    lowered = name.lower()
    for role in ("boxes", "classes", "scores"):
        if role[:-2] in lowered:  # box, class, score (signature names like detection_scores)
            return role
    return "count" if "num" in lowered or "count" in lowered else None


def find_postprocess_outputs(outputs: Sequence[TensorInfo]) -> PostprocessLayout | None:
    """Locate boxes (1,N,4), classes (1,N), scores (1,N) and count (1,) of a postprocess op.

    Cached per output layout (a tuple of TensorInfo): it depends on the model only, and
    working it out again for every frame cost ~40 µs, a third of the whole postprocess.

    Shapes settle boxes and count; names settle classes vs scores (TF1 op suffixes, TF2
    signature suffixes, or words in the name). If names say nothing, the op's own order is
    assumed and :func:`detect` still checks the values (class ids are whole numbers).
    """
    if isinstance(outputs, tuple):
        return _postprocess_layout(outputs)
    return _postprocess_layout.__wrapped__(tuple(outputs))


@functools.lru_cache(maxsize=16)
def _postprocess_layout(outputs: tuple[TensorInfo, ...]) -> PostprocessLayout | None:
    if len(outputs) != 4:
        return None
    boxes = [i for i, t in enumerate(outputs) if len(t.shape) == 3 and t.shape[2] == 4]
    count = [i for i, t in enumerate(outputs) if int(np.prod(t.shape)) == 1]
    pair = [i for i, t in enumerate(outputs) if len(t.shape) == 2 and t.shape[1] > 1]
    if len(boxes) != 1 or len(count) != 1 or len(pair) != 2:
        return None
    n = outputs[boxes[0]].shape[1]
    if any(outputs[i].shape[1] != n for i in pair):
        return None
    roles = {i: _role_from_name(outputs[i].name) for i in pair}
    classes, scores = pair
    if roles[pair[0]] == "scores" or roles[pair[1]] == "classes":
        scores, classes = pair
    return PostprocessLayout(boxes=boxes[0], classes=classes, scores=scores, count=count[0])


def find_raw_ssd_outputs(outputs: Sequence[TensorInfo]) -> tuple[int, int] | None:
    """(box encodings (1,N,4), class scores (1,N,C)) of a detector without the postprocess op."""
    shapes = [tuple(d for d in t.shape if d != 1) for t in outputs]
    boxes = [i for i, s in enumerate(shapes) if len(s) == 2 and s[1] == 4]
    for b in boxes:
        n = shapes[b][0]
        cls = [i for i, s in enumerate(shapes) if i != b and len(s) == 2 and s[0] == n]
        if len(cls) == 1:
            return b, cls[0]
    return None


@functools.lru_cache(maxsize=8)
def default_anchors(num_anchors: int, input_size: tuple[int, int] | None = None) -> ssd.FloatArray:
    """Anchors of the reference SSD config that yields ``num_anchors`` (cached, read-only).

    For square inputs the anchors only depend on the first feature-map size, found from the
    count; non-square inputs need ``input_size`` (height, width).
    """
    if input_size is not None:
        sizes = [ssd.reference_feature_map_sizes(*input_size)]
    else:
        sizes = [ssd.reference_feature_map_sizes(a * 16, a * 16) for a in range(1, 257)]
    for fm in sizes:
        if 3 * fm[0][0] * fm[0][1] + 6 * sum(h * w for h, w in fm[1:]) == num_anchors:
            anchors = ssd.generate_anchors(fm, image_size=input_size)
            anchors.setflags(write=False)
            return anchors
    raise ModelError(
        f"raw SSD outputs have {num_anchors} anchors but no reference SSD-MobileNet anchor "
        f"config gives that many" + (f" for a {input_size} input" if input_size else ""),
        hint="export the model with TFLite_Detection_PostProcess or supply its anchors",
    )


def detect(
    outputs: Sequence[npt.NDArray[Any]],
    infos: Sequence[TensorInfo],
    labels: Sequence[str],
    *,
    label_offset: int,
    threshold: float,
    geometry: Geometry,
    anchors: npt.NDArray[np.float32] | None = None,
    allow: frozenset[str] | None = None,
    iou_threshold: float = 0.6,
    max_detections: int = 100,
    input_size: tuple[int, int] | None = None,
) -> Detections:
    """Detections above ``threshold`` with boxes normalized to the SOURCE frame.

    Works for models with the postprocess op and for raw SSD heads (decoded with ``anchors``
    or the reference anchors). ``allow``: keep only these labels.
    """
    layout = find_postprocess_outputs(infos)
    if layout is not None:
        boxes, class_ids, scores = _read_postprocess(outputs, infos, layout, threshold)
    else:
        raw = find_raw_ssd_outputs(infos)
        if raw is None:
            shapes = ", ".join(f"{t.name} {t.shape}" for t in infos)
            raise ModelError(
                f"not a detector output: expected TFLite_Detection_PostProcess (boxes, classes, "
                f"scores, count) or raw SSD (1,N,4)+(1,N,C) tensors, got {shapes}"
            )
        enc = dequantize(outputs[raw[0]], infos[raw[0]]).reshape(-1, 4)
        cls = dequantize(outputs[raw[1]], infos[raw[1]])
        cls = cls.reshape(enc.shape[0], -1)
        if anchors is None:
            anchors = default_anchors(enc.shape[0], input_size)
        boxes, class_ids, scores = ssd.decode_raw_ssd(
            enc,
            cls,
            anchors,
            score_threshold=threshold,
            iou_threshold=iou_threshold,
            max_detections=max_detections,
            scores_are_logits=bool(cls.min() < 0.0 or cls.max() > 1.0),
        )
    names = tuple(_label(labels, int(c) + label_offset) for c in class_ids)
    xyxy = np.clip(boxes[:, [1, 0, 3, 2]], 0.0, 1.0)
    result = Detections(geometry.to_frame(xyxy), class_ids.astype(np.int32), scores, names)
    if allow is not None and len(result):
        result = result[np.array([name in allow for name in result.label], bool)]
    return result


def _read_postprocess(
    outputs: Sequence[npt.NDArray[Any]],
    infos: Sequence[TensorInfo],
    layout: PostprocessLayout,
    threshold: float,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int32], npt.NDArray[np.float32]]:
    """Valid rows (≤ count, score ≥ threshold) of the op's outputs, boxes [y0,x0,y1,x1]."""

    def real(i: int) -> npt.NDArray[np.float32]:
        return dequantize(np.asarray(outputs[i]), infos[i])

    boxes = real(layout.boxes).reshape(-1, 4)
    classes = real(layout.classes).reshape(-1)
    scores = real(layout.scores).reshape(-1)
    n = int(np.clip(real(layout.count).reshape(-1)[0], 0, boxes.shape[0]))
    boxes, classes, scores = boxes[:n], classes[:n], scores[:n]
    if n and not _integral(classes) and _integral(scores):
        classes, scores = scores, classes  # names were silent and the order was not the op's
    keep = scores >= threshold
    class_ids = np.rint(classes[keep]).astype(np.int32)
    return boxes[keep], class_ids, scores[keep].astype(np.float32)


def _integral(values: npt.NDArray[np.float32]) -> bool:
    return bool(np.all(values == np.rint(values)))
