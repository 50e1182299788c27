"""Weights for the rebuilt SSD graphs: recovered from a .tflite, or from a TF1 checkpoint.

TFLite files list ops in an order of their own, so recovery works on the graph: predictor
convs are those with no conv downstream (plus, in SSDLite, the depthwise conv feeding each);
everything else is the trunk, whose conv order is unique (one chain). Each predictor is tied
to its feature map by walking back to the trunk layer that feeds it, and told box from class
by its output depth.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edgecam.errors import ModelError, UsageError
from tools._common import import_tf
from tools._fold import Unit, assign_all, set_folded
from tools._ssd_model import SSDModel
from tools._tflite_weights import TFLiteGraph, WeightLayer

log = logging.getLogger(__name__)


def _split(graph: TFLiteGraph) -> tuple[list[WeightLayer], list[WeightLayer]]:
    """(trunk layers, predictor-head layers), each in op order."""
    final = {lay.op_index for lay in graph.layers if not graph.downstream_layers(lay)}
    head = set(final)
    for lay in graph.layers:
        consumers = graph.direct_consumers(lay)
        if lay.kind == "depthwise" and len(consumers) == 1 and consumers[0].op_index in final:
            head.add(lay.op_index)
    trunk = [lay for lay in graph.layers if lay.op_index not in head]
    heads = [lay for lay in graph.layers if lay.op_index in head]
    return trunk, heads


def recover(target: SSDModel, graph: TFLiteGraph) -> None:
    """Fill ``target`` with the dequantized weights of a same-architecture .tflite."""
    what = f"{graph.path.name} → {target.config.arch}"
    trunk, heads = _split(graph)
    assign_all(target.trunk, trunk, what + " (backbone + extra layers)")
    trunk_index = {lay.op_index: i for i, lay in enumerate(trunk)}
    feature_of = {unit_index: fm for fm, unit_index in enumerate(target.feature_units)}
    groups: dict[tuple[int, str], list[WeightLayer]] = {}
    for lay in heads:
        if graph.downstream_layers(lay):
            continue  # a head depthwise: collected with its 1x1 below
        chain = [lay]
        src = graph.source_layer(lay)
        while src is not None and src.op_index not in trunk_index:
            chain.insert(0, src)
            src = graph.source_layer(src)
        if src is None or trunk_index[src.op_index] not in feature_of:
            raise ModelError(f"{what}: predictor {lay.describe()} is not fed by a feature map")
        fm = feature_of[trunk_index[src.op_index]]
        n = target.anchors_per_location[fm]
        role = "box" if lay.out_channels == 4 * n else "class"
        groups[(fm, role)] = chain
    for fm, head in enumerate(target.heads):
        for role, units in head.items():
            if (fm, role) not in groups:
                raise ModelError(
                    f"{what}: no {role} predictor found for feature map {fm}",
                    "the file is not this architecture (check --arch / --depth-multiplier)",
                )
            assign_all(units, groups[(fm, role)], f"{what} BoxPredictor_{fm} {role}")
    log.info("recovered %d trunk and %d head layers from %s", len(trunk), len(heads), graph.path)


def load_checkpoint(target: SSDModel, checkpoint: Path) -> None:
    """Weights from a TF object-detection (TF1, slim) checkpoint, e.g. the model zoo's
    ssdlite_mobilenet_v2_coco_2018_05_09/model.ckpt. ``checkpoint``: the prefix or its dir."""
    tf = import_tf()
    prefix = _checkpoint_prefix(tf, checkpoint)
    try:
        reader = tf.train.load_checkpoint(prefix)
    except Exception as exc:  # NotFoundError, DataLossError
        raise UsageError(f"cannot read checkpoint {checkpoint}: {exc}") from exc
    names = set(reader.get_variable_to_shape_map())
    units = [*target.trunk, *(u for head in target.heads for us in head.values() for u in us)]
    for unit in units:
        _load_unit(unit, target.scope(unit), reader, names, checkpoint)
    log.info("loaded %d layers from checkpoint %s", len(units), prefix)


def _checkpoint_prefix(tf: Any, path: Path) -> str:
    if path.is_dir():
        found = tf.train.latest_checkpoint(str(path))
        if found:
            return str(found)
        index = sorted(path.glob("*.index"))
        if not index:
            raise UsageError(
                f"no checkpoint (*.index) in {path}",
                "pass the unpacked model zoo directory or its model.ckpt prefix",
            )
        return str(index[0].with_suffix(""))
    if not Path(str(path) + ".index").is_file():
        raise UsageError(f"checkpoint {path} not found (no {path}.index)")
    return str(path)


def _load_unit(unit: Unit, scope: str, reader: Any, names: set[str], ckpt: Path) -> None:
    weight = "depthwise_weights" if unit.kind == "depthwise" else "weights"

    def get(name: str, default: float | None = None, size: int = 0) -> npt.NDArray[np.float32]:
        full = f"{scope}/{name}"
        if full in names:
            return np.asarray(reader.get_tensor(full), np.float32)
        if default is not None:
            return np.full(size, default, np.float32)
        raise ModelError(
            f"checkpoint {ckpt} has no variable {full!r}",
            "is it a checkpoint of this --arch / --depth-multiplier?",
        )

    kernel = get(weight)
    if kernel.shape != tuple(unit.kernel_shape):
        raise ModelError(
            f"checkpoint {ckpt}: {scope}/{weight} has shape {kernel.shape}, the graph "
            f"expects {unit.kernel_shape}",
            "wrong --depth-multiplier or --num-classes?",
        )
    out = kernel.shape[-1] * (kernel.shape[-2] if unit.kind == "depthwise" else 1)
    if unit.bn is None:
        set_folded(unit, kernel, get("biases", 0.0, out))
        return
    unit.conv.set_weights([kernel])
    bn = "BatchNorm"
    unit.bn.set_weights(
        [
            get(f"{bn}/gamma", 1.0, out),
            get(f"{bn}/beta", 0.0, out),
            get(f"{bn}/moving_mean"),
            get(f"{bn}/moving_variance"),
        ]
    )
