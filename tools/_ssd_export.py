"""Append ``TFLite_Detection_PostProcess`` to a Keras SSD and convert it to TFLite.

The TFLite converter turns a ``tf.function`` whose ``experimental_implements`` names that op
(with its attributes) into the custom op, whatever the function body computes. The graph is
exported with Keras 3's ExportArchive: a plain ``tf.saved_model.save`` of a Keras 3 model
leaves variables unfrozen and int8 calibration then fails in READ_VARIABLE.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import flatbuffers
import numpy as np
import numpy.typing as npt

from edgecam.core import ssd
from tools import _convert
from tools._common import import_tf

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PostprocessOptions:
    """Attributes of the op; defaults are those of the reference TF1 exports."""

    max_detections: int = 10
    max_classes_per_detection: int = 1
    detections_per_class: int = 100
    use_regular_nms: bool = False
    nms_score_threshold: float = 1e-8
    nms_iou_threshold: float = 0.6
    num_classes: int = 90
    scales: tuple[float, float, float, float] = ssd.DEFAULT_SCALES

    def attributes(self) -> dict[str, Any]:
        """The op's custom options, as TFLite's kernel reads them."""
        y, x, h, w = self.scales
        return {
            "max_detections": self.max_detections,
            "max_classes_per_detection": self.max_classes_per_detection,
            "detections_per_class": self.detections_per_class,
            "use_regular_nms": self.use_regular_nms,
            "nms_score_threshold": self.nms_score_threshold,
            "nms_iou_threshold": self.nms_iou_threshold,
            "y_scale": y,
            "x_scale": x,
            "h_scale": h,
            "w_scale": w,
            "num_classes": self.num_classes,
        }

    def signature(self) -> str:
        y, x, h, w = self.scales
        attrs = [
            ("max_detections", "i", self.max_detections),
            ("max_classes_per_detection", "i", self.max_classes_per_detection),
            ("detections_per_class", "i", self.detections_per_class),
            ("use_regular_nms", "b", str(self.use_regular_nms).lower()),
            ("nms_score_threshold", "f", self.nms_score_threshold),
            ("nms_iou_threshold", "f", self.nms_iou_threshold),
            ("y_scale", "f", y),
            ("x_scale", "f", x),
            ("h_scale", "f", h),
            ("w_scale", "f", w),
            ("num_classes", "i", self.num_classes),
        ]
        parts = [f'name: "{_convert.POSTPROCESS_OP}"']
        for key, kind, value in attrs:
            shown = f"{value:.9g}" if kind == "f" else value
            parts.append(f'attr {{ key: "{key}" value {{ {kind}: {shown} }} }}')
        return " ".join(parts)


def _export(
    model: Any, anchors: npt.NDArray[np.float32], opts: PostprocessOptions, path: Path
) -> None:
    tf = import_tf()
    import keras

    @tf.function(experimental_implements=opts.signature())  # type: ignore[untyped-decorator]
    def postprocess(box_encodings: Any, class_predictions: Any, anchor_boxes: Any) -> Any:
        # Placeholder body: the converter replaces the whole function with the custom op.
        zero = tf.constant(0.0, dtype=tf.float32)
        return zero, zero, zero, zero

    size = tuple(model.input_shape[1:])
    anchor_const = tf.constant(anchors, dtype=tf.float32)

    @tf.function(input_signature=[tf.TensorSpec((1, *size), tf.float32)])  # type: ignore[untyped-decorator]
    def serve(image: Any) -> Any:
        boxes, scores = model(image, training=False)
        return postprocess(boxes, scores, anchor_const)

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", serve)
    archive.write_out(str(path), verbose=False)


def convert(
    model: Any,
    anchors: npt.NDArray[np.float32],
    opts: PostprocessOptions,
    images: npt.NDArray[np.float32] | None,
    io_type: _convert.IoType = "uint8",
) -> bytes:
    """TFLite bytes with the op appended; ``images`` None → float model (the reference)."""
    tf = import_tf()
    with tempfile.TemporaryDirectory(prefix="edgecam-ssd-") as tmp:
        path = Path(tmp) / "saved_model"
        _export(model, anchors, opts, path)
        converter = tf.lite.TFLiteConverter.from_saved_model(str(path))
        converter.allow_custom_ops = True
        if images is None:
            data: bytes = converter.convert()
        else:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = _representative(images)
            # BUILTINS too: the op's float inputs need DEQUANTIZE after int8 producers.
            converter.target_spec.supported_ops = [
                tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                tf.lite.OpsSet.TFLITE_BUILTINS,
            ]
            converter.inference_input_type = tf.uint8 if io_type == "uint8" else tf.int8
            data = converter.convert()
    data = _convert.tf1_detection_outputs(data)
    # The converter drops attributes it has no slot for (detections_per_class): set them all.
    return set_postprocess_options(data, opts.attributes())


def set_postprocess_options(data: bytes, values: dict[str, Any]) -> bytes:
    """The model with its postprocess op's attributes updated (custom options flexbuffer).

    Also how the fidelity report gets the op with the reference graph's per-class NMS from
    the same converted weights, without converting again.
    """
    from flatbuffers import flexbuffers

    schema = _convert._schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    found = 0
    for op in model.subgraphs[0].operators:
        code = model.operatorCodes[op.opcodeIndex]
        if code.customCode and code.customCode.decode() == _convert.POSTPROCESS_OP:
            attrs = flexbuffers.Loads(bytes(bytearray(op.customOptions)))
            attrs.update(values)
            op.customOptions = list(flexbuffers.Dumps(attrs))
            found += 1
    if found != 1:
        raise ValueError(f"expected one {_convert.POSTPROCESS_OP} op, found {found}")
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _representative(images: npt.NDArray[np.float32]) -> Any:
    def gen() -> Any:
        for image in images:
            yield [image[None, ...]]

    return gen
