"""The reference Keras MobileNetV2 classifier and the three ways to give it weights.

Keras' ImageNet weights (1000 classes) exist only for α ∈ {0.35, 0.5, 0.75, 1.0, 1.3, 1.4} and
square inputs of 96–224 px; TF-slim/TFLite models have 1001 classes (0 = background). Keras'
explicit stride-2 padding (``correct_pad``) equals TF "SAME" padding for every input size, so
slim weights fit the Keras graph unchanged.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from edgecam.errors import FetchError, ModelError, UsageError
from tools._common import import_tf
from tools._fold import assign_all, units_in_order
from tools._tflite_weights import TFLiteGraph

log = logging.getLogger(__name__)

IMAGENET_ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
IMAGENET_SIZES = (96, 128, 160, 192, 224)
ALPHAS = IMAGENET_ALPHAS  # widths tried when recovering from a file whose α is not given


def build(alpha: float, size: int, classes: int) -> Any:
    """The Keras reference graph (keras.applications.MobileNetV2) with random weights."""
    import_tf()
    import keras

    if classes < 2:
        raise UsageError(f"--classes must be >= 2, got {classes}")
    if alpha <= 0 or size < 32:
        raise UsageError(f"need alpha > 0 and input size >= 32, got alpha {alpha}, size {size}")
    return keras.applications.MobileNetV2(
        input_shape=(size, size, 3), alpha=alpha, weights=None, classes=classes
    )


def check_imagenet(alpha: float, size: int) -> None:
    """UsageError for a width/resolution that has no published Keras ImageNet weights."""
    if alpha not in IMAGENET_ALPHAS:
        raise UsageError(
            f"no ImageNet weights exist for MobileNetV2 alpha {alpha} "
            f"(Keras publishes {', '.join(str(a) for a in IMAGENET_ALPHAS)})",
            "pick one of those, or pass --weights FILE / --from-tflite FILE",
        )
    if size not in IMAGENET_SIZES:
        raise UsageError(
            f"no ImageNet weights exist for MobileNetV2 at {size}x{size} "
            f"(Keras publishes {', '.join(str(s) for s in IMAGENET_SIZES)})",
            "pick one of those sizes, or pass --weights FILE / --from-tflite FILE",
        )


def build_imagenet(alpha: float, size: int) -> Any:
    """Reference graph with Keras' ImageNet weights (1000 classes); needs them online/cached."""
    check_imagenet(alpha, size)
    import_tf()
    import keras

    try:
        return keras.applications.MobileNetV2(
            input_shape=(size, size, 3), alpha=alpha, weights="imagenet"
        )
    except Exception as exc:  # urllib/HTTP/OSError variants from keras' get_file
        raise FetchError(
            f"cannot get Keras ImageNet weights for alpha {alpha} size {size}: "
            f"{' '.join(str(exc).split())[:200]}",
            "go online once (they are cached in ~/.keras/models) or pass --weights FILE",
        ) from exc


def load_weights_file(model: Any, path: Path) -> Any:
    """Weights from a local file: .keras (whole model), .h5/.weights.h5, or a SavedModel dir."""
    import_tf()
    import keras

    if not path.exists():
        raise UsageError(f"weights {path} not found", "pass an existing .keras/.h5 file")
    try:
        if path.suffix == ".keras":
            return keras.models.load_model(path, compile=False)
        if path.is_dir():
            return keras.layers.TFSMLayer(str(path), call_endpoint="serving_default")
        model.load_weights(str(path))
        return model
    except Exception as exc:  # keras raises ValueError/OSError/KeyError for mismatches
        raise ModelError(
            f"cannot load weights {path}: {' '.join(str(exc).split())[:200]}",
            "the file must come from the same MobileNetV2 alpha/classes",
        ) from exc


def infer_config(graph: TFLiteGraph, alpha: float | None) -> tuple[float, int, int]:
    """(alpha, input size, classes) of a prebuilt MobileNetV2 .tflite."""
    if not graph.layers:
        raise ModelError(f"{graph.path} has no conv layers", "is it a classifier model?")
    first, last = graph.layers[0], graph.layers[-1]
    in_shape = graph.input_shape
    size = in_shape[1] if len(in_shape) == 4 else 224
    classes = last.out_channels
    if alpha is not None:
        return alpha, size, classes
    for candidate in ALPHAS:
        if _channels_match(candidate, graph):
            return candidate, size, classes
    raise ModelError(
        f"{graph.path.name} is not a MobileNetV2 of any width "
        f"{', '.join(str(a) for a in ALPHAS)}: {len(graph.layers)} conv layers, first "
        f"{first.describe()}",
        "recover weights only from a MobileNetV2 classifier .tflite",
    )


def _make_divisible(value: float, divisor: int = 8) -> int:
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


def _channels_match(alpha: float, graph: TFLiteGraph) -> bool:
    """Output channels of MobileNetV2(alpha) conv layers (the 53 of the reference)."""
    spec = [(16, 1, 1), (24, 6, 2), (32, 6, 3), (64, 6, 4), (96, 6, 3), (160, 6, 3), (320, 6, 1)]
    chans = [_make_divisible(32 * alpha)]
    prev = chans[0]
    for filters, expansion, repeats in spec:
        out = _make_divisible(filters * alpha)
        for _ in range(repeats):
            if expansion != 1:
                chans.append(prev * expansion)
            chans += [prev * expansion, out]
            prev = out
    chans.append(_make_divisible(1280 * alpha) if alpha > 1.0 else 1280)
    got = [layer.out_channels for layer in graph.layers[:-1]]
    return got == chans


def recover(graph: TFLiteGraph, alpha: float | None = None) -> Any:
    """Keras MobileNetV2 carrying the (dequantized, BN-folded) weights of ``graph``."""
    alpha, size, classes = infer_config(graph, alpha)
    model = build(alpha, size, classes)
    assign_all(units_in_order(model), graph.layers, f"{graph.path.name} → MobileNetV2 {alpha}")
    log.info("recovered MobileNetV2 alpha=%s size=%d classes=%d", alpha, size, classes)
    return model
