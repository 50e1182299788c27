"""TFLite conversion: full-integer quantization, float reference, and flatbuffer touch-ups.

Full-int8 means int8 weights and activations in every compute op; the input/output type is
chosen separately (uint8 for edgecam, like the prebuilt models). MobileNet's float input is
x/127.5 − 1, so the calibrated input quantization (≈ 1/127.5, zero point ≈ 127) folds that
normalisation away: the app feeds raw pixels.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import flatbuffers
import numpy as np
import numpy.typing as npt

from tools._common import import_tf

log = logging.getLogger(__name__)

IoType = Literal["uint8", "int8"]
POSTPROCESS_OP = "TFLite_Detection_PostProcess"


def _schema() -> Any:
    import_tf()
    from tensorflow.lite.python import schema_py_generated

    return schema_py_generated


def _representative(images: npt.NDArray[np.float32]) -> Callable[[], Iterator[list[Any]]]:
    def gen() -> Iterator[list[Any]]:
        for image in images:
            yield [image[None, ...]]

    return gen


def quantize(converter: Any, images: npt.NDArray[np.float32], io_type: IoType | None) -> bytes:
    """Run ``converter`` with full-integer settings; ``io_type`` None keeps float I/O."""
    tf = import_tf()
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = _representative(images)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if io_type is not None:
        dtype = tf.uint8 if io_type == "uint8" else tf.int8
        converter.inference_input_type = dtype
        converter.inference_output_type = dtype
    start = time.perf_counter()
    data: bytes = converter.convert()
    log.info("int8 conversion: %.1f s, %d bytes", time.perf_counter() - start, len(data))
    return data


def keras_converter(model: Any, workdir: Path) -> Any:
    """A converter for a Keras 3 model with a fixed batch of 1 (like the prebuilt files).

    Exported quietly through a SavedModel: ``from_keras_model`` prints every captured
    variable to stdout.
    """
    tf = import_tf()
    shape = (1, *tuple(model.input_shape[1:]))
    path = workdir / f"saved_model_{id(model)}"
    model.export(
        str(path),
        format="tf_saved_model",
        verbose=False,
        input_signature=[tf.TensorSpec(shape, tf.float32)],
    )
    return tf.lite.TFLiteConverter.from_saved_model(str(path))


def keras_int8(model: Any, images: npt.NDArray[np.float32], io_type: IoType) -> bytes:
    with tempfile.TemporaryDirectory(prefix="edgecam-convert-") as tmp:
        return quantize(keras_converter(model, Path(tmp)), images, io_type)


def keras_float(model: Any) -> bytes:
    with tempfile.TemporaryDirectory(prefix="edgecam-convert-") as tmp:
        data: bytes = keras_converter(model, Path(tmp)).convert()
    return data


def io_quantization(data: bytes) -> str:
    """ "input uint8 scale=… zero_point=…; output …" for the manifest's build notes."""
    schema = _schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    sub = model.subgraphs[0]
    type_names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    parts = []
    for role, tensors in (("input", sub.inputs), ("output", sub.outputs)):
        for i in tensors:
            t = sub.tensors[i]
            q = t.quantization
            text = f"{role} {type_names.get(t.type, '?').lower()}"
            if q is not None and q.scale is not None and len(q.scale):
                text += f" scale={float(q.scale[0]):.8g} zero_point={int(q.zeroPoint[0])}"
            parts.append(text)
    return "; ".join(parts)


def tf1_detection_outputs(data: bytes) -> bytes:
    """Reorder and rename the postprocess outputs to the TF1 layout.

    TF2 converters list the op's outputs in a signature-dependent order (e.g. :1, :3, :0, :2)
    and name them StatefulPartitionedCall:N. The prebuilt TF1 models have (boxes, classes,
    scores, count) named TFLite_Detection_PostProcess, :1, :2, :3; emitting exactly that keeps
    every consumer that expects the classic layout working. The SavedModel signature is dropped
    since its names no longer describe the outputs (TF1 files carry none either).
    """
    schema = _schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    sub = model.subgraphs[0]
    pp_outputs: list[int] | None = None
    for op in sub.operators:
        code = model.operatorCodes[op.opcodeIndex]
        if code.customCode and code.customCode.decode() == POSTPROCESS_OP:
            pp_outputs = [int(i) for i in op.outputs]
    if pp_outputs is None or len(pp_outputs) != 4:
        raise ValueError(f"model has no {POSTPROCESS_OP} op with 4 outputs")
    sub.outputs = np.asarray(pp_outputs, np.int32)
    for i, tensor in enumerate(pp_outputs):
        sub.tensors[tensor].name = (POSTPROCESS_OP + (f":{i}" if i else "")).encode()
    model.signatureDefs = []
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
