"""The checkpoint's own TF1 graph (``model.ckpt.meta``), run in a private session.

Why: it is the ground truth of what a converted detector must compute — preprocessing,
feature extractor, box predictors, anchor generator, box decoding, sigmoid and per-class NMS
exactly as the object-detection API built them. With the real weights restored it gives the
fidelity report its reference; with random values it writes checkpoints in the reference's
exact format (same names, shapes, dtypes and file layout, through the graph's own Saver), so
the whole conversion path can be tested without the trained weights.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edgecam.errors import ModelError
from tools._common import import_tf

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]

#: Tensors of the object-detection SSD graph (TF1 export names).
BOX_ENCODINGS = "concat:0"  # (N, A, 1, 4) raw [ty, tx, th, tw]
CLASS_LOGITS = "concat_1:0"  # (N, A, C + 1) before the score converter, background first
ANCHORS = "Concatenate/concat:0"  # (A, 4) [ymin, xmin, ymax, xmax]
DETECTIONS = ("detection_boxes:0", "detection_scores:0", "detection_classes:0", "num_detections:0")
IMAGE = "image_tensor:0"
#: Linear output layers: a sigmoid/box code follows, not a ReLU, so LeCun scaling is right.
_LINEAR_SCOPES = ("BoxEncodingPredictor", "ClassPredictor")


@dataclass(frozen=True)
class ReferenceOutputs:
    """What the reference graph computes for a batch of images.

    anchors: (A, 4) ``[ycenter, xcenter, h, w]`` (the postprocess op's convention);
    boxes: (N, D, 4) ``[ymin, xmin, ymax, xmax]`` clipped to the image, as the graph does;
    classes: 0-based without background (the op's ids: COCO id − 1).
    """

    box_encodings: FloatArray
    class_logits: FloatArray
    anchors: FloatArray
    boxes: FloatArray
    scores: FloatArray
    classes: npt.NDArray[np.int32]
    count: npt.NDArray[np.int32]


class ReferenceGraph:
    """Import ``meta`` into its own graph and session; variables uninitialised until
    :meth:`restore` or :meth:`randomize`."""

    def __init__(self, meta: Path) -> None:
        tf = import_tf()
        self._tf = tf
        self.graph = tf.Graph()
        try:
            with self.graph.as_default():
                self._saver = tf.compat.v1.train.import_meta_graph(str(meta), clear_devices=True)
        except Exception as exc:  # DecodeError, ValueError, NotFoundError...
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ModelError(f"cannot import the meta graph {meta}: {first}") from exc
        if self._saver is None:
            raise ModelError(f"meta graph {meta} has no variables to restore")
        self.variables = [op for op in self.graph.get_operations() if op.type == "VariableV2"]
        names = {op.name for op in self.graph.get_operations()}
        missing = [t.split(":")[0] for t in (BOX_ENCODINGS, CLASS_LOGITS, ANCHORS, IMAGE)]
        missing = [n for n in missing if n not in names]
        if missing:
            raise ModelError(f"meta graph {meta} is not an SSD export: no {', '.join(missing)}")
        self.session = tf.compat.v1.Session(graph=self.graph)
        self._assign: list[tuple[Any, Any]] | None = None

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> ReferenceGraph:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def restore(self, prefix: str) -> None:
        """Load the checkpoint at ``prefix`` through the graph's own Saver."""
        saver_def = self._saver.saver_def
        self.session.run(saver_def.restore_op_name, {saver_def.filename_tensor_name: prefix})

    def save(self, prefix: str) -> None:
        """Write the variables to ``prefix`` through the graph's own Saver (reference format)."""
        saver_def = self._saver.saver_def
        self.session.run(saver_def.save_tensor_name, {saver_def.filename_tensor_name: prefix})

    def randomize(self, seed: int, class_bias: float = -4.0) -> None:
        """Give every variable a random value a trained network could have.

        He-scaled normal kernels (LeCun for the linear predictor outputs), BatchNorm gamma in
        [0.5, 1.5], beta and moving mean ~ N(0, 0.2), moving variance in [0.5, 2]. Class
        biases sit around ``class_bias`` (most anchors are background in a trained detector),
        so scores spread over (0, 1) instead of crowding at 1 and the detection order means
        something.
        """
        if self._assign is None:
            tf = self._tf
            with self.graph.as_default():
                self._assign = []
                for op in self.variables:
                    ref = op.outputs[0]
                    value = tf.compat.v1.placeholder(ref.dtype.base_dtype, ref.shape)
                    self._assign.append((tf.raw_ops.Assign(ref=ref, value=value), value))
        rng = np.random.default_rng(seed)
        feed = {}
        for op, (_, placeholder) in zip(self.variables, self._assign, strict=True):
            shape = tuple(int(d) for d in placeholder.shape)
            dtype = placeholder.dtype.as_numpy_dtype
            feed[placeholder] = np.asarray(_random_value(op.name, shape, rng, class_bias), dtype)
        self.session.run([a for a, _ in self._assign], feed)

    def run(self, images: npt.NDArray[np.uint8]) -> ReferenceOutputs:
        """Outputs for (N, H, W, 3) uint8 RGB images (already at the model's input size)."""
        fetches = [BOX_ENCODINGS, CLASS_LOGITS, ANCHORS, *DETECTIONS]
        enc, logits, corners, boxes, scores, classes, count = self.session.run(
            fetches, {IMAGE: np.asarray(images, np.uint8)}
        )
        ymin, xmin, ymax, xmax = (corners[:, i].astype(np.float64) for i in range(4))
        anchors = np.stack(
            [(ymin + ymax) / 2, (xmin + xmax) / 2, ymax - ymin, xmax - xmin], axis=1
        ).astype(np.float32)
        return ReferenceOutputs(
            box_encodings=enc.reshape(enc.shape[0], -1, 4).astype(np.float32),
            class_logits=logits.astype(np.float32),
            anchors=anchors,
            boxes=boxes.astype(np.float32),
            scores=scores.astype(np.float32),
            classes=(np.rint(classes) - 1).astype(np.int32),
            count=np.rint(count).astype(np.int32),
        )


def _random_value(
    name: str, shape: tuple[int, ...], rng: np.random.Generator, class_bias: float
) -> npt.NDArray[Any]:
    parts = name.split("/")
    leaf, scope = parts[-1], parts[-2] if len(parts) > 1 else ""
    linear = scope in _LINEAR_SCOPES
    if leaf == "global_step":
        return np.asarray(0)
    if leaf in ("weights", "depthwise_weights"):
        fan_in = int(np.prod(shape[:-1] if leaf == "weights" else shape[:2]))
        gain = 1.0 if linear else 2.0
        return rng.normal(0.0, np.sqrt(gain / fan_in), shape)
    if leaf == "biases":
        if scope == "ClassPredictor":
            return rng.normal(class_bias, 0.5, shape)
        return rng.normal(0.0, 0.1, shape)
    if leaf == "gamma":
        return rng.uniform(0.5, 1.5, shape)
    if leaf in ("beta", "moving_mean"):
        return rng.normal(0.0, 0.2, shape)
    if leaf == "moving_variance":
        return rng.uniform(0.5, 2.0, shape)
    raise ModelError(f"reference graph: no rule to randomise variable {name!r}")
