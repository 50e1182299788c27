"""Raw outputs → Classification / Detections (edgecam.core.postprocess).

Classifier: dequantization, softmax only for logits, top-k order, label offset. Detector:
the four TFLite_Detection_PostProcess outputs must be found whatever order the model lists
them in (TF1 boxes/classes/scores/count; TF2 StatefulPartitionedCall:1,:3,:0,:2), rows past
`count` ignored, boxes clipped and mapped to the source frame; raw SSD heads are decoded.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from edgecam.core import ssd
from edgecam.core.postprocess import (
    PostprocessLayout,
    check_labels,
    classify,
    default_anchors,
    detect,
    find_postprocess_outputs,
    find_raw_ssd_outputs,
)
from edgecam.core.preprocess import Geometry
from edgecam.errors import ModelError
from edgecam.types import Detections, TensorInfo
from tests.support.ssd_boxes import encode_boxes, reference_anchors

F32 = np.dtype(np.float32)
U8 = np.dtype(np.uint8)
LABELS = ["person", "bicycle", "car", "motorcycle", "airplane"]


def info(
    name: str, shape: tuple[int, ...], dtype: np.dtype[Any] = F32, scale: float = 0.0, zp: int = 0
) -> TensorInfo:
    return TensorInfo(name, 0, shape, dtype, scale, zp)


# --- classification ----------------------------------------------------------------------


def test_quantized_top_k_with_label_offset() -> None:
    out = np.zeros((1, 6), np.uint8)
    out[0, [1, 3, 4]] = [64, 160, 32]  # 0.25, 0.625, 0.125 with scale 1/256
    labels = ["background", "a", "b", "c", "d", "e", "f"]
    r = classify(
        out, info("p", (1, 6), U8, 1 / 256, 0), labels, label_offset=1, top_k=2, threshold=0.0
    )
    assert r.class_id.tolist() == [3, 1]
    assert r.label == ("d", "b")  # labels[class_id + 1]
    np.testing.assert_allclose(r.score, [0.625, 0.25])
    assert r.score.dtype == np.float32


def test_quantized_softmax_is_never_softmaxed_again() -> None:
    """An uncertain image: the uint8 softmax output sums to ~0.5 after rounding."""
    out = np.zeros((1, 1001), np.uint8)
    out[0, :4] = [40, 30, 30, 28]  # 0.156 + 0.117 + 0.117 + 0.109 = 0.5
    labels = [str(i) for i in range(1001)]
    for dtype, zp in ((U8, 0), (np.dtype(np.int8), -128)):
        q = (out.astype(int) + zp).astype(dtype)
        r = classify(q, info("p", (1, 1001), dtype, 1 / 256, zp), labels, label_offset=0, top_k=2)
        np.testing.assert_allclose(r.score, [40 / 256, 30 / 256])
    # int8 logits (range -12.8..12.7) are softmaxed.
    logits = np.zeros((1, 3), np.int8)
    logits[0] = [20, 0, -20]
    r = classify(
        logits, info("l", (1, 3), np.dtype(np.int8), 0.1, 0), "xyz", label_offset=0, top_k=3
    )
    expected = np.exp([2.0, 0.0, -2.0]) / np.exp([2.0, 0.0, -2.0]).sum()
    np.testing.assert_allclose(r.score, expected, rtol=1e-5)


def test_threshold_and_top_k_larger_than_classes() -> None:
    out = np.array([[0.1, 0.6, 0.3]], np.float32)
    r = classify(out, info("p", (1, 3)), ["x", "y", "z"], label_offset=0, top_k=10, threshold=0.2)
    assert r.label == ("y", "z")
    empty = classify(out, info("p", (1, 3)), ["x", "y", "z"], label_offset=0, top_k=0)
    assert len(empty) == 0


def test_logits_get_softmax_probabilities_do_not() -> None:
    logits = np.array([[2.0, -1.0, 0.5]], np.float32)
    r = classify(logits, info("l", (1, 3)), ["x", "y", "z"], label_offset=0, top_k=3)
    expected = np.exp(logits[0]) / np.exp(logits[0]).sum()
    np.testing.assert_allclose(r.score, np.sort(expected)[::-1], rtol=1e-6)
    # Non-negative but far from summing to 1: logits too (e.g. ReLU outputs).
    r2 = classify(np.array([[3.0, 0.0, 1.0]]), info("l", (1, 3)), "xyz", label_offset=0, top_k=1)
    assert r2.score[0] < 1.0 and r2.label == ("x",)
    # Already probabilities: kept as they are.
    probs = np.array([[0.7, 0.2, 0.1]], np.float32)
    r3 = classify(probs, info("p", (1, 3)), "xyz", label_offset=0, top_k=3)
    np.testing.assert_allclose(r3.score, [0.7, 0.2, 0.1])


def test_short_label_file() -> None:
    r = classify(np.array([[0.1, 0.9]]), info("p", (1, 2)), ["only"], label_offset=0, top_k=1)
    assert r.label == ("class 1",)  # never an IndexError per frame
    with pytest.raises(ModelError, match="model has 1001 classes but the label file has 1000"):
        check_labels(1001, ["x"] * 1000, 0, "mobilenet_v2")
    check_labels(1000, ["x"] * 1001, 1, "mobilenet_v1_1000")


# --- postprocess-op detectors --------------------------------------------------------------

TF1_INFOS = [
    info("TFLite_Detection_PostProcess", (1, 4, 4)),
    info("TFLite_Detection_PostProcess:1", (1, 4)),
    info("TFLite_Detection_PostProcess:2", (1, 4)),
    info("TFLite_Detection_PostProcess:3", (1,)),
]
BOXES = np.array(
    [[[0.1, 0.2, 0.5, 0.6], [-0.05, 0.5, 0.4, 1.02], [0.3, 0.3, 0.9, 0.9], [0, 0, 1, 1]]],
    np.float32,
)  # [ymin, xmin, ymax, xmax]; row 1 pokes outside the image
CLASSES = np.array([[2.0, 0.0, 3.0, 1.0]], np.float32)
SCORES = np.array([[0.9, 0.8, 0.4, 0.95]], np.float32)  # row 3 is past count
COUNT = np.array([3.0], np.float32)
TF1_OUTPUTS = [BOXES, CLASSES, SCORES, COUNT]


def _detect(outputs: list[npt.NDArray[Any]], infos: list[TensorInfo], **kw: Any) -> Detections:
    args: dict[str, Any] = {"label_offset": 0, "threshold": 0.5, "geometry": Geometry()} | kw
    return detect(outputs, infos, LABELS, **args)


def test_tf1_postprocess_outputs() -> None:
    assert find_postprocess_outputs(TF1_INFOS) == PostprocessLayout(0, 1, 2, 3)
    d = _detect(TF1_OUTPUTS, TF1_INFOS)
    assert d.label == ("car", "person")  # 0.4 below threshold, row 3 past count
    assert d.class_id.tolist() == [2, 0]
    np.testing.assert_allclose(d.score, [0.9, 0.8])
    # [ymin,xmin,ymax,xmax] → [xmin,ymin,xmax,ymax], clipped to [0, 1]
    np.testing.assert_allclose(d.xyxy, [[0.2, 0.1, 0.6, 0.5], [0.5, 0.0, 1.0, 0.4]], atol=1e-6)


@pytest.mark.parametrize("order", list(itertools.permutations(range(4))))
def test_any_output_order_gives_the_same_detections(order: tuple[int, ...]) -> None:
    infos = [TF1_INFOS[i] for i in order]
    outputs = [TF1_OUTPUTS[i] for i in order]
    d = _detect(outputs, infos)
    assert d.label == ("car", "person")


def test_tf2_signature_names_in_their_listed_order() -> None:
    # TF2 exports list StatefulPartitionedCall :1 (scores), :3 (boxes), :0 (count), :2 (classes).
    infos = [
        info("StatefulPartitionedCall:1", (1, 4)),
        info("StatefulPartitionedCall:3", (1, 4, 4)),
        info("StatefulPartitionedCall:0", (1,)),
        info("StatefulPartitionedCall:2", (1, 4)),
    ]
    assert find_postprocess_outputs(infos) == PostprocessLayout(
        boxes=1, classes=3, scores=0, count=2
    )
    d = _detect([SCORES, BOXES, COUNT, CLASSES], infos)
    assert d.label == ("car", "person")


def test_silent_names_are_settled_by_values() -> None:
    """Unknown names and scores listed before classes: class ids are the whole numbers."""
    infos = [
        info("out_a", (1, 4, 4)),
        info("out_b", (1, 4)),
        info("out_c", (1, 4)),
        info("n", (1,)),
    ]
    d = _detect([BOXES, SCORES, CLASSES, COUNT], infos)
    assert d.label == ("car", "person")
    np.testing.assert_allclose(d.score, [0.9, 0.8])


def test_count_zero_and_count_larger_than_rows() -> None:
    assert len(_detect([BOXES, CLASSES, SCORES, np.array([0.0], np.float32)], TF1_INFOS)) == 0
    d = _detect([BOXES, CLASSES, SCORES, np.array([99.0], np.float32)], TF1_INFOS)
    assert d.label == ("car", "person", "bicycle")


def test_geometry_maps_boxes_to_the_source_frame() -> None:
    # Letterbox: content occupies model rows 0.25..0.75 → source 0..1.
    g = Geometry(scale_x=1.0, scale_y=2.0, offset_x=0.0, offset_y=-0.5)
    d = _detect(TF1_OUTPUTS, TF1_INFOS, geometry=g)
    np.testing.assert_allclose(d.xyxy[0], [0.2, 0.0, 0.6, 0.5], atol=1e-6)


def test_label_filter() -> None:
    d = _detect(TF1_OUTPUTS, TF1_INFOS, allow=frozenset({"person"}))
    assert d.label == ("person",) and d.class_id.tolist() == [0]
    assert len(_detect(TF1_OUTPUTS, TF1_INFOS, allow=frozenset({"dog"}))) == 0


def test_classifier_outputs_are_not_a_detector() -> None:
    assert find_postprocess_outputs([info("p", (1, 1001))]) is None
    assert find_raw_ssd_outputs([info("p", (1, 1001))]) is None
    with pytest.raises(ModelError, match="not a detector output"):
        _detect([np.zeros((1, 1001), np.float32)], [info("p", (1, 1001))])


# --- raw SSD heads ---------------------------------------------------------------------------


def _raw_outputs() -> tuple[list[npt.NDArray[Any]], list[TensorInfo], npt.NDArray[Any]]:
    anchors = reference_anchors(300, 300)
    n = len(anchors)
    boxes = np.array([[0.2, 0.1, 0.6, 0.5], [0.5, 0.55, 0.9, 0.95]], np.float32)  # yxyx
    corners = ssd.decode_boxes(np.zeros((n, 4)), anchors)
    enc = np.zeros((n, 4), np.float32)
    logits = np.full((n, 6), -6.0, np.float32)
    for k, (box, cls) in enumerate(zip(boxes, (2, 0), strict=True)):
        best = int(np.argmax(ssd.iou_one_to_many(box, corners)))
        enc[best] = encode_boxes(box[None], anchors[best : best + 1])[0]
        logits[best, cls + 1] = 2.0 - k
    # quantize the encodings like a uint8 model would
    scale, zp = 0.05, 128
    q = np.clip(np.round(enc / scale + zp), 0, 255).astype(np.uint8)
    infos = [
        info("raw_outputs/box_encodings", (1, n, 4), U8, scale, zp),
        info("raw_outputs/class_predictions", (1, n, 6)),
    ]
    return [q[None], logits[None]], infos, boxes


def test_raw_ssd_outputs_are_decoded_with_reference_anchors() -> None:
    outputs, infos, boxes = _raw_outputs()
    assert find_postprocess_outputs(infos) is None
    assert find_raw_ssd_outputs(infos) == (0, 1)
    d = _detect(outputs, infos)
    assert d.label == ("car", "person")
    np.testing.assert_allclose(d.xyxy, boxes[:, [1, 0, 3, 2]], atol=0.01)
    np.testing.assert_allclose(d.score, 1 / (1 + np.exp(-np.array([2.0, 1.0]))), rtol=1e-5)
    # Explicit anchors give the same.
    d2 = _detect(outputs, infos, anchors=reference_anchors(300, 300))
    np.testing.assert_allclose(d2.xyxy, d.xyxy)


def test_default_anchors_from_count() -> None:
    np.testing.assert_array_equal(default_anchors(1917), reference_anchors(300, 300))
    np.testing.assert_array_equal(default_anchors(2034), reference_anchors(320, 320))
    assert not default_anchors(1917).flags.writeable
    with pytest.raises(ModelError, match="1000 anchors"):
        default_anchors(1000)
