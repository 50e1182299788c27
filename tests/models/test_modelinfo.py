"""Reading .tflite files without an interpreter: I/O tensors, ops, the SSD postprocess op's
options and the label files appended by TFLite metadata, on the real asset models; and clean
errors (never a crash) on bytes that are not a whole model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgecam.errors import ModelError
from edgecam.models.modelinfo import (
    POSTPROCESS_OP,
    TensorDesc,
    embedded_label_file,
    inspect_bytes,
    inspect_model,
    raw_ssd_outputs,
)

SSD = "coco_ssd_mobilenet_v1_1.0_quant_2018_06_29.tflite"

# (file, input side, input dtype, input (scale, zero point) or None) from SOURCES.md
CLASSIFIERS = [
    ("mobilenet_v2_1.0_224_quant.tflite", 224, "uint8", (0.0078125, 128)),
    ("tf2_mobilenet_v2_1.0_224_ptq.tflite", 224, "uint8", (0.007843137719, 127)),
    ("mobilenet_v1_0.25_128_quant.tflite", 128, "uint8", (0.0078125, 128)),
    ("mobilenet_v1_0.5_160_quant.tflite", 160, "uint8", (0.0078125, 128)),
    ("mobilenet_v1_0.75_192_quant.tflite", 192, "uint8", (0.0078125, 128)),
    ("mobilenet_v1_0.25_224_quant.tflite", 224, "uint8", (0.0078125, 128)),
    ("mobilenet_v1_0.25_224_float.tflite", 224, "float32", None),
]


def test_ssd_postprocess_op_and_outputs(asset_models: Path) -> None:
    info = inspect_model(asset_models / SSD)
    assert info.task == "detection" and info.num_classes == 90
    assert info.custom_ops == (POSTPROCESS_OP,)
    assert info.ops[-1] == POSTPROCESS_OP and "CONV_2D" in info.ops
    pp = info.postprocess
    assert pp is not None
    assert (pp.num_classes, pp.max_detections, pp.max_classes_per_detection) == (90, 10, 1)
    assert (pp.y_scale, pp.x_scale, pp.h_scale, pp.w_scale) == (10.0, 10.0, 5.0, 5.0)
    assert pp.nms_iou_threshold == pytest.approx(0.6)
    assert pp.use_regular_nms is False
    assert [t.role for t in info.outputs] == ["boxes", "classes", "scores", "count"]
    assert [t.shape for t in info.outputs] == [(1, 10, 4), (1, 10), (1, 10), (1,)]
    assert [t.name for t in info.outputs] == [
        "TFLite_Detection_PostProcess",
        "TFLite_Detection_PostProcess:1",
        "TFLite_Detection_PostProcess:2",
        "TFLite_Detection_PostProcess:3",
    ]
    (inp,) = info.inputs
    assert inp.name == "normalized_input_image_tensor"
    assert (inp.shape, inp.dtype, inp.scale, inp.zero_point) == (
        (1, 300, 300, 3),
        "uint8",
        0.0078125,
        128,
    )


@pytest.mark.parametrize(("file", "side", "dtype", "quant"), CLASSIFIERS)
def test_classifiers_have_one_1001_wide_output(
    asset_models: Path, file: str, side: int, dtype: str, quant: tuple[float, int] | None
) -> None:
    info = inspect_model(asset_models / file)
    assert info.task == "classification" and info.num_classes == 1001
    assert info.postprocess is None and info.custom_ops == ()
    (out,) = info.outputs
    assert out.shape == (1, 1001) and out.dtype == dtype
    (inp,) = info.inputs
    assert inp.shape == (1, side, side, 3) and inp.dtype == dtype
    if quant is None:
        assert inp.scale is None and inp.zero_point is None
    else:
        assert inp.scale == pytest.approx(quant[0]) and inp.zero_point == quant[1]


def test_embedded_imagenet_labels_match_the_label_file(assets: Path) -> None:
    data = (assets / "models" / "mobilenet_v2_1.0_224_quant.tflite").read_bytes()
    found = embedded_label_file(data)
    assert found is not None
    name, content = found
    assert name == "imagenet_labels.txt"
    assert content == (assets / "labels" / "imagenet_labels.txt").read_bytes()
    assert inspect_bytes(data, "m").embedded_files == ("imagenet_labels.txt",)


def test_embedded_ssd_labelmap_differs_only_in_placeholders(assets: Path) -> None:
    found = embedded_label_file((assets / "models" / SSD).read_bytes())
    assert found is not None and found[0] == "labelmap.txt"
    embedded = found[1].decode().splitlines()
    coco = (assets / "labels" / "coco_labels.txt").read_text().splitlines()
    assert len(embedded) == len(coco) == 90
    assert [e for e, c in zip(embedded, coco, strict=True) if e != c] == ["???"] * 10


def test_model_without_metadata_has_no_embedded_files(asset_models: Path) -> None:
    data = (asset_models / "mobilenet_v1_0.25_224_float.tflite").read_bytes()
    assert embedded_label_file(data) is None
    assert inspect_bytes(data, "f").embedded_files == ()


def test_random_bytes_are_not_a_model(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(os.urandom(4096))
    with pytest.raises(ModelError, match=r"junk.tflite: not a TFLite model \(file identifier"):
        inspect_model(junk)
    with pytest.raises(ModelError, match="not a TFLite model"):
        inspect_bytes(b"", "empty")


def test_random_bytes_with_the_right_identifier_are_malformed() -> None:
    with pytest.raises(ModelError, match="x: malformed TFLite flatbuffer"):
        inspect_bytes(b"\x10\x00\x00\x00TFL3" + os.urandom(2000), "x")


@pytest.mark.parametrize("fraction", [0.02, 0.5, 0.9])
def test_truncated_models_are_detected(asset_models: Path, fraction: float) -> None:
    # SSD weights run to the end of the flatbuffer: any cut inside them is noticed.
    data = (asset_models / SSD).read_bytes()
    with pytest.raises(ModelError) as info:
        inspect_bytes(data[: int(len(data) * fraction)], "cut.tflite")
    assert str(info.value).startswith("cut.tflite: ")
    assert "truncated" in str(info.value) or "malformed" in str(info.value)


def test_missing_file_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="cannot read model file"):
        inspect_model(tmp_path / "nope.tflite")


def test_raw_ssd_head_is_recognised() -> None:
    # Output order of a detector exported without the postprocess op: scores, then boxes.
    outputs = (
        TensorDesc("raw_outputs/class_predictions", (1, 1917, 91), "float32"),
        TensorDesc("raw_outputs/box_encodings", (1, 1917, 4), "float32"),
    )
    assert raw_ssd_outputs(outputs) == (1, 0)
    assert raw_ssd_outputs(outputs[:1]) is None
    mismatched = (outputs[0], TensorDesc("b", (1, 100, 4), "float32"))
    assert raw_ssd_outputs(mismatched) is None
