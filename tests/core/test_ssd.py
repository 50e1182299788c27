"""SSD anchors, box coder, NMS and raw-output decoding (edgecam.core.ssd).

Reference values are derived by hand from the TF object-detection API rules
(multiple_grid_anchor_generator.create_ssd_anchors + grid_anchor_generator.tile_anchors):
scales linear 0.2..0.95 over 6 layers, lowest layer (0.1, 1), (s, 2), (s, 1/2), other layers
one box per aspect ratio plus sqrt(s * s_next) at ratio 1; centres (i + 0.5) / grid;
h = s / sqrt(ar), w = s * sqrt(ar). The real SSD asset embeds its anchors, and its
TFLite_Detection_PostProcess op output is the ground truth for decode_raw_ssd.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import tflite

from edgecam.core import ssd
from edgecam.runtime.interpreter import available_runtimes
from edgecam.runtime.open import open_runner
from tests.support.ssd_boxes import encode_boxes, reference_anchors

SSD_MODEL = "coco_ssd_mobilenet_v1_1.0_quant_2018_06_29.tflite"
R2, R3 = math.sqrt(2.0), math.sqrt(3.0)


@pytest.mark.parametrize(
    ("size", "maps", "count"),
    [
        (300, [19, 10, 5, 3, 2, 1], 1917),  # SSD-MobileNetV1/V2 300x300
        (320, [20, 10, 5, 3, 2, 1], 2034),  # SSDLite-MobileNetV2 320x320
    ],
)
def test_reference_anchor_counts(size: int, maps: list[int], count: int) -> None:
    sizes = ssd.reference_feature_map_sizes(size, size)
    assert sizes == [(m, m) for m in maps]
    anchors = ssd.generate_anchors(sizes)
    assert anchors.shape == (count, 4)
    assert anchors.dtype == np.float32


def test_first_anchors_match_hand_derived_values() -> None:
    a = reference_anchors(300, 300)
    c0, c1 = 0.5 / 19, 1.5 / 19
    expected_first = [
        [c0, c0, 0.1, 0.1],  # (0.1, 1.0)
        [c0, c0, 0.2 / R2, 0.2 * R2],  # (0.2, 2.0)
        [c0, c0, 0.2 * R2, 0.2 / R2],  # (0.2, 0.5)
        [c0, c1, 0.1, 0.1],  # next cell along x
    ]
    np.testing.assert_allclose(a[:4], expected_first, rtol=1e-6)
    # Layer 1 (10x10, scale 0.35, next 0.5) starts after 19*19*3 anchors.
    s = 0.35
    expected_layer1 = [
        [0.05, 0.05, s, s],
        [0.05, 0.05, s / R2, s * R2],
        [0.05, 0.05, s * R2, s / R2],
        [0.05, 0.05, s / R3, s * R3],
        [0.05, 0.05, s * R3, s / R3],
        [0.05, 0.05, math.sqrt(s * 0.5), math.sqrt(s * 0.5)],
    ]
    np.testing.assert_allclose(a[1083:1089], expected_layer1, rtol=1e-6)
    # Row-major: 10 cells along x before y advances.
    np.testing.assert_allclose(a[1083 + 6 * 10, :2], [0.15, 0.05], rtol=1e-6)
    # Last anchor: 1x1 layer, interpolated box sqrt(0.95 * 1.0).
    np.testing.assert_allclose(a[-1], [0.5, 0.5, math.sqrt(0.95), math.sqrt(0.95)], rtol=1e-6)


def test_non_square_input_keeps_unit_aspect_anchors_square_in_pixels() -> None:
    h, w = 240, 320
    a = reference_anchors(h, w)
    # Box spec 0 of layer 1 has aspect ratio 1: square in pixels.
    first_layer = ssd.reference_feature_map_sizes(h, w)[0]
    i = first_layer[0] * first_layer[1] * 3
    assert a[i, 2] * h == pytest.approx(a[i, 3] * w)


def _model_anchors_and_op_inputs(model: Path) -> tuple[npt.NDArray[Any], list[str]]:
    """Dequantized anchors constant + input tensor names of the postprocess op (flatbuffer)."""
    buf = model.read_bytes()
    m = tflite.Model.GetRootAsModel(buf, 0)
    g = m.Subgraphs(0)
    for k in range(g.OperatorsLength()):
        op = g.Operators(k)
        if m.OperatorCodes(op.OpcodeIndex()).CustomCode() == b"TFLite_Detection_PostProcess":
            names = [g.Tensors(op.Inputs(j)).Name().decode() for j in range(op.InputsLength())]
            t = g.Tensors(op.Inputs(2))
            raw = m.Buffers(t.Buffer()).DataAsNumpy().reshape(-1, 4)
            q = t.Quantization()
            anchors = (raw.astype(np.float32) - q.ZeroPoint(0)) * q.Scale(0)
            return anchors, names
    raise AssertionError("no TFLite_Detection_PostProcess op in the model")


def test_generated_anchors_equal_the_ones_baked_into_the_real_ssd(asset_models: Path) -> None:
    model_anchors, _ = _model_anchors_and_op_inputs(asset_models / SSD_MODEL)
    ours = reference_anchors(300, 300)
    assert ours.shape == model_anchors.shape
    # The model stores them as uint8 with scale 0.00645: half a step of rounding.
    assert np.abs(ours - model_anchors).max() <= 0.0033


def test_decode_of_zero_encoding_is_the_anchor_itself() -> None:
    anchors = np.array([[0.5, 0.4, 0.2, 0.1]], np.float32)
    boxes = ssd.decode_boxes(np.zeros((1, 4)), anchors)
    np.testing.assert_allclose(boxes, [[0.4, 0.35, 0.6, 0.45]], rtol=1e-6)


def test_decode_matches_faster_rcnn_formula() -> None:
    anchors = np.array([[0.5, 0.5, 0.2, 0.4]], np.float32)
    enc = np.array([[1.0, -2.0, 0.5, -1.0]], np.float32)  # ty, tx, th, tw
    yc, xc = 0.5 + 1.0 / 10 * 0.2, 0.5 - 2.0 / 10 * 0.4
    h, w = math.exp(0.5 / 5) * 0.2, math.exp(-1.0 / 5) * 0.4
    np.testing.assert_allclose(
        ssd.decode_boxes(enc, anchors), [[yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2]], 1e-6
    )


def test_encode_decode_round_trip() -> None:
    rng = np.random.default_rng(1)
    anchors = reference_anchors(300, 300)
    idx = rng.integers(0, len(anchors), 200)
    y0x0 = rng.uniform(0, 0.7, (200, 2))
    hw = rng.uniform(0.02, 0.3, (200, 2))
    boxes = np.concatenate([y0x0, y0x0 + hw], axis=1).astype(np.float32)
    enc = encode_boxes(boxes, anchors[idx])
    np.testing.assert_allclose(ssd.decode_boxes(enc, anchors[idx]), boxes, atol=1e-5)


def _brute_force_nms(
    boxes: npt.NDArray[Any], scores: npt.NDArray[Any], thr: float, k: int
) -> list[int]:
    def iou(a: npt.NDArray[Any], b: npt.NDArray[Any]) -> float:
        ih = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        iw = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = ih * iw
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
        return inter / union if union > 0 else 0.0

    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    kept: list[int] = []
    for i in order:
        if len(kept) == k:
            break
        if all(iou(boxes[i], boxes[j]) <= thr for j in kept):
            kept.append(i)
    return kept


@pytest.mark.parametrize("seed", range(8))
def test_nms_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 60
    y0x0 = rng.uniform(0, 0.6, (n, 2))
    boxes = np.concatenate([y0x0, y0x0 + rng.uniform(0.05, 0.4, (n, 2))], 1).astype(np.float32)
    scores = rng.choice(np.linspace(0.1, 1.0, 25), n).astype(np.float32)  # with ties
    for thr, k in [(0.5, 100), (0.3, 5), (0.0, 100), (1.0, 10)]:
        assert ssd.nms(boxes, scores, thr, k).tolist() == _brute_force_nms(boxes, scores, thr, k)


def test_nms_empty_input() -> None:
    assert ssd.nms(np.zeros((0, 4)), np.zeros(0), 0.5, 10).shape == (0,)


def _scene(
    anchors: npt.NDArray[Any],
) -> tuple[npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[Any], list[int]]:
    """Box encodings + logits (background col 0) encoding three known objects.

    Each object is encoded into its 3 best-matching anchors (duplicates NMS must remove);
    objects 0 and 1 overlap heavily but have different classes.
    """
    boxes = np.array(
        [[0.10, 0.10, 0.50, 0.40], [0.12, 0.12, 0.52, 0.42], [0.60, 0.55, 0.95, 0.90]],
        np.float32,
    )
    classes = [2, 17, 0]
    n, c = len(anchors), 91
    enc = np.zeros((n, 4), np.float32)
    logits = np.full((n, c), -8.0, np.float32)
    logits[:, 0] = 4.0
    corners = ssd.decode_boxes(np.zeros((n, 4)), anchors)
    used: set[int] = set()
    for obj, (box, cls) in enumerate(zip(boxes, classes, strict=True)):
        ious = np.array([ssd.iou_one_to_many(box, corners[i : i + 1])[0] for i in range(n)])
        ious[list(used)] = -1
        best = np.argsort(-ious)[:3]
        used.update(best.tolist())
        enc[best] = encode_boxes(np.repeat(box[None], 3, 0), anchors[best])
        # Same object seen by neighbours with slightly shifted boxes and lower confidence.
        enc[best[1:], 0] += 0.3
        logits[best, cls + 1] = [3.0 - obj * 0.5, 1.0, 0.5]
    return enc, logits, boxes, classes


def test_decode_raw_ssd_recovers_encoded_boxes() -> None:
    anchors = reference_anchors(300, 300)
    enc, logits, boxes, classes = _scene(anchors)
    out_boxes, out_cls, out_scores = ssd.decode_raw_ssd(
        enc, logits, anchors, score_threshold=0.5, iou_threshold=0.5
    )
    assert out_cls.tolist() == classes  # ordered by score: 3.0, 2.5, 2.0
    np.testing.assert_allclose(out_boxes, boxes, atol=1e-5)
    expected = 1 / (1 + np.exp(-np.array([3.0, 2.5, 2.0])))
    np.testing.assert_allclose(out_scores, expected, rtol=1e-5)


def test_decode_raw_ssd_class_agnostic_suppresses_across_classes() -> None:
    anchors = reference_anchors(300, 300)
    enc, logits, boxes, _ = _scene(anchors)
    out_boxes, out_cls, _ = ssd.decode_raw_ssd(
        enc, logits, anchors, score_threshold=0.5, iou_threshold=0.5, class_agnostic=True
    )
    # Objects 0 and 1 overlap (IoU ~0.8): only the stronger one survives.
    assert out_cls.tolist() == [2, 0]
    np.testing.assert_allclose(out_boxes, boxes[[0, 2]], atol=1e-5)


def test_decode_raw_ssd_probabilities_and_limits() -> None:
    anchors = reference_anchors(300, 300)
    enc, logits, _, _ = _scene(anchors)
    probs = 1 / (1 + np.exp(-logits))
    _, cls, scores = ssd.decode_raw_ssd(
        enc, probs, anchors, score_threshold=0.5, scores_are_logits=False, max_detections=2
    )
    assert cls.tolist() == [2, 17]
    assert scores.dtype == np.float32
    with pytest.raises(ValueError, match="same number of rows"):
        ssd.decode_raw_ssd(enc[:10], logits, anchors, score_threshold=0.5)


@pytest.mark.parametrize("runtime", sorted(available_runtimes()))
def test_raw_decode_reproduces_the_models_own_postprocess_op(
    runtime: str,
    asset_models: Path,
    asset_images: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Our decoding of the op's own inputs must give the op's outputs (fast NMS mode)."""
    import cv2

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    model = asset_models / SSD_MODEL
    anchors, op_inputs = _model_anchors_and_op_inputs(model)
    runner = open_runner(model, runtime=runtime, num_threads=2, preserve_all_tensors=True)  # type: ignore[arg-type]
    image = cv2.imread(str(asset_images / "pets.jpg"))
    tensor = cv2.resize(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), (300, 300))[None]
    boxes, classes, scores, count = runner.run(tensor)
    enc_info, enc = runner.read_tensor(op_inputs[0])
    cls_info, cls = runner.read_tensor(op_inputs[1])
    enc_real = (enc.astype(np.float32) - enc_info.zero_point) * enc_info.scale
    cls_real = (cls.astype(np.float32) - cls_info.zero_point) * cls_info.scale
    ours = ssd.decode_raw_ssd(
        enc_real.reshape(-1, 4),
        cls_real.reshape(len(anchors), -1),
        anchors,
        score_threshold=1e-8,
        iou_threshold=0.6,
        max_detections=10,
        scores_are_logits=False,
        class_agnostic=True,
    )
    n = int(count[0])
    np.testing.assert_allclose(ours[0], boxes[0, :n], atol=1e-5)
    assert ours[1].tolist() == classes[0, :n].astype(int).tolist()
    np.testing.assert_allclose(ours[2], scores[0, :n], atol=1e-6)
