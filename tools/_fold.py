"""Put recovered (already BN-folded) weights into a Keras graph that still has its BN layers.

The reference graphs keep Conv → BatchNorm → ReLU6 so that real checkpoints (with gamma,
beta, moving mean/variance) load unchanged. Recovered TFLite weights have BN folded into the
conv, so each BN becomes an identity plus the folded bias: gamma = sqrt(1 + eps), beta = bias,
mean 0, variance 1. The converter folds BN again, so nothing of this survives in the .tflite.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from edgecam.errors import ModelError
from tools._tflite_weights import WeightLayer

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Unit:
    """One weighted Keras layer and the BatchNormalization right after it (if any)."""

    conv: Any
    bn: Any | None

    @property
    def kind(self) -> str:
        cls = type(self.conv).__name__
        return {"DepthwiseConv2D": "depthwise", "Dense": "dense"}.get(cls, "conv")

    @property
    def kernel_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.conv.get_weights()[0].shape)

    def describe(self) -> str:
        return f"{self.conv.name} ({self.kind} {self.kernel_shape})"


def units_in_order(model: Any) -> list[Unit]:
    """Conv/Depthwise/Dense layers in the model's layer order, each with the BN it feeds.

    The BN is found through the layer's outbound nodes (branches make "the next layer in
    model.layers" unreliable); a conv feeding anything else has no BN.
    """
    weighted = ("Conv2D", "DepthwiseConv2D", "Dense")
    units: list[Unit] = []
    for layer in model.layers:
        if type(layer).__name__ not in weighted:
            continue
        consumers = [node.operation for node in getattr(layer, "_outbound_nodes", [])]
        bn = [c for c in consumers if type(c).__name__ == "BatchNormalization"]
        units.append(Unit(layer, bn[0] if len(consumers) == 1 and bn else None))
    return units


def set_folded(unit: Unit, kernel: FloatArray, bias: FloatArray) -> None:
    """Give ``unit`` the effective (BN-folded) kernel and bias."""
    weights = [kernel.reshape(unit.kernel_shape).astype(np.float32)]
    if unit.conv.use_bias:
        weights.append(bias.astype(np.float32))
    unit.conv.set_weights(weights)
    if unit.bn is not None:
        eps = float(unit.bn.epsilon)
        n = bias.shape[0]
        unit.bn.set_weights(
            [
                np.full(n, np.sqrt(1.0 + eps), np.float32),
                bias.astype(np.float32),
                np.zeros(n, np.float32),
                np.ones(n, np.float32),
            ]
        )
    elif not unit.conv.use_bias and np.any(bias):
        raise ModelError(f"{unit.describe()} has neither a bias nor a batch norm to hold one")


def _compatible(unit: Unit, layer: WeightLayer) -> bool:
    want = unit.kernel_shape
    got = tuple(layer.kernel.shape)
    if unit.kind == "dense" and layer.kind == "conv" and got[:2] == (1, 1):
        got = got[2:]  # a 1x1 conv over a 1x1 map is a dense layer (TF-slim's logits)
    elif unit.kind != layer.kind:
        return False
    return want == got


def assign_all(units: Sequence[Unit], layers: Sequence[WeightLayer], what: str) -> None:
    """Assign layer i to unit i; ModelError naming the first mismatch (wrong architecture)."""
    if len(units) != len(layers):
        raise ModelError(
            f"{what}: the TFLite model has {len(layers)} conv/dense layers, the Keras graph "
            f"{len(units)}",
            "the file is not this architecture (check --arch, --alpha, --classes)",
        )
    for i, (unit, layer) in enumerate(zip(units, layers, strict=True)):
        if not _compatible(unit, layer):
            raise ModelError(
                f"{what}: layer {i} {unit.describe()} does not match TFLite {layer.describe()}",
                "the file is not this architecture / width multiplier / class count",
            )
        set_folded(unit, layer.kernel, layer.bias)
