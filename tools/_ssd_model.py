"""SSD / SSDLite detectors of the TF object-detection reference, rebuilt in Keras 3.

Mirrors ``ssd_mobilenet_v1_feature_extractor`` / ``ssd_mobilenet_v2_feature_extractor`` with
``multi_resolution_feature_maps`` (layer depths -1, -1, 512, 256, 256, 128, a 1x1 conv of half
depth before each stride-2 3x3), the convolutional box predictor (SSDLite: 3x3 depthwise + BN
+ ReLU6 then a 1x1 conv; SSD-MobileNetV1 quantized: a 1x1 conv) and the
``ssd_anchor_generator`` (6 layers, scales 0.2–0.95, ratios 1, 2, ½, 3, ⅓, 3 boxes in the
lowest layer). Everything uses TF "SAME" padding like the reference: 300 → 19, 10, 5, 3, 2, 1
and 320 → 20, 10, 5, 3, 2, 1.

Layer names follow the reference checkpoint scopes with "/" → "__" so checkpoint variables map
one-to-one (see _ssd_weights.py). Sizes, classes and anchor parameters come from the
checkpoint's pipeline.config when there is one (_pipeline_config.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from edgecam.core import ssd
from edgecam.errors import UsageError
from tools._common import import_tf
from tools._fold import Unit

Arch = Literal["ssd_mobilenet_v1", "ssdlite_mobilenet_v2"]
ARCHS: tuple[Arch, ...] = ("ssd_mobilenet_v1", "ssdlite_mobilenet_v2")
LAYER_DEPTHS = (-1, -1, 512, 256, 256, 128)
BN_EPS = 1e-3
#: MobileNetV1: (stride, pointwise depth) of the 13 depthwise-separable blocks.
V1_BLOCKS = [(1, 64), (2, 128), (1, 128), (2, 256), (1, 256), (2, 512)]
V1_BLOCKS += [(1, 512)] * 5 + [(2, 1024), (1, 1024)]


@dataclass(frozen=True)
class AnchorSpec:
    """``ssd_anchor_generator`` parameters (defaults: the reference SSD-MobileNet configs)."""

    min_scale: float = 0.2
    max_scale: float = 0.95
    aspect_ratios: tuple[float, ...] = ssd.DEFAULT_ASPECT_RATIOS
    interpolated_scale_aspect_ratio: float = 1.0
    reduce_boxes_in_lowest_layer: bool = True

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`edgecam.ssd.box_specs` / ``generate_anchors``."""
        return {
            "min_scale": self.min_scale,
            "max_scale": self.max_scale,
            "aspect_ratios": self.aspect_ratios,
            "interpolated_scale_aspect_ratio": self.interpolated_scale_aspect_ratio,
            "reduce_boxes_in_lowest_layer": self.reduce_boxes_in_lowest_layer,
        }


@dataclass(frozen=True)
class SSDConfig:
    arch: Arch
    size: int
    depth_multiplier: float = 1.0
    num_classes: int = 90  # without background
    min_depth: int = 16
    anchors: AnchorSpec = field(default_factory=AnchorSpec)

    def depth(self, d: float) -> int:
        return max(int(d * self.depth_multiplier), self.min_depth)


@dataclass
class SSDModel:
    """The Keras graph plus what recovery, checkpoints and anchors need to know about it.

    model: image (1, S, S, 3) in [-1, 1] → (box encodings (1, N, 4), class scores after
    sigmoid (1, N, num_classes + 1), background first).
    trunk: backbone + extra layers in graph order; feature_units[i]: index into trunk of the
    unit producing feature map i; heads[i]: {"box": [...], "class": [...]} units.
    scopes: unit → reference checkpoint scope.
    """

    config: SSDConfig
    model: Any
    trunk: list[Unit]
    feature_units: list[int]
    heads: list[dict[str, list[Unit]]]
    feature_sizes: list[tuple[int, int]]
    anchors_per_location: list[int]
    scopes: dict[int, str] = field(default_factory=dict)

    @property
    def anchors(self) -> npt.NDArray[np.float32]:
        return ssd.generate_anchors(
            self.feature_sizes, image_size=(self.config.size,) * 2, **self.config.anchors.kwargs()
        )

    def scope(self, unit: Unit) -> str:
        return self.scopes[id(unit.conv)]


class _Builder:
    """Adds Conv/BN/ReLU6 groups and records them as units with their checkpoint scope."""

    def __init__(self) -> None:
        import_tf()
        import keras

        self.k = keras
        self.units: list[Unit] = []
        self.scopes: dict[int, str] = {}

    def conv(
        self,
        x: Any,
        scope: str,
        filters: int | None,
        kernel: int,
        stride: int = 1,
        *,
        bn: bool = True,
        relu: bool = True,
    ) -> Any:
        """filters None → depthwise. Without BN the conv carries its own bias."""
        name = scope.replace("/", "__")
        layers = self.k.layers
        if filters is None:
            layer = layers.DepthwiseConv2D(
                kernel, stride, padding="same", use_bias=not bn, name=name
            )
        else:
            layer = layers.Conv2D(
                filters, kernel, stride, padding="same", use_bias=not bn, name=name
            )
        x = layer(x)
        norm = None
        if bn:
            norm = layers.BatchNormalization(epsilon=BN_EPS, name=name + "__BatchNorm")
            x = norm(x)
        if relu:
            x = layers.ReLU(6.0, name=name + "__Relu6")(x)
        unit = Unit(layer, norm)
        self.units.append(unit)
        self.scopes[id(layer)] = scope
        return x


def _mobilenet_v1(b: _Builder, cfg: SSDConfig, x: Any) -> tuple[list[Any], list[int]]:
    """Slim MobileNetV1 with SAME padding; returns (Conv2d_11, Conv2d_13) pointwise outputs."""
    pre = "FeatureExtractor/MobilenetV1/"
    x = b.conv(x, pre + "Conv2d_0", cfg.depth(32), 3, 2)
    maps: list[Any] = []
    units: list[int] = []
    for i, (stride, depth) in enumerate(V1_BLOCKS, start=1):
        x = b.conv(x, pre + f"Conv2d_{i}_depthwise", None, 3, stride)
        x = b.conv(x, pre + f"Conv2d_{i}_pointwise", cfg.depth(depth), 1)
        if i in (11, 13):
            maps.append(x)
            units.append(len(b.units) - 1)
    return maps, units


def _mobilenet_v2(b: _Builder, cfg: SSDConfig, image: Any) -> tuple[list[Any], list[int]]:
    """keras.applications.MobileNetV2 (no top) inlined into the graph; maps after block 13's
    expansion (576 ch) and the last 1x1 conv (1280 ch), as in the reference layout."""
    backbone = b.k.applications.MobileNetV2(
        input_tensor=image, alpha=cfg.depth_multiplier, include_top=False, weights=None
    )
    from tools._fold import units_in_order

    pre = "FeatureExtractor/MobilenetV2/"
    for unit in units_in_order(backbone):
        b.units.append(unit)
        b.scopes[id(unit.conv)] = pre + _slim_v2_scope(unit.conv.name)
    names = [u.conv.name for u in b.units]
    maps = [backbone.get_layer("block_13_expand_relu").output, backbone.output]
    return maps, [names.index("block_13_expand"), names.index("Conv_1")]


def _slim_v2_scope(keras_name: str) -> str:
    """Keras MobileNetV2 layer name → TF-slim scope (block_3_expand → expanded_conv_3/expand)."""
    if keras_name == "Conv1":
        return "Conv"
    if keras_name.startswith("expanded_conv_"):
        return "expanded_conv/" + keras_name.removeprefix("expanded_conv_")
    if keras_name.startswith("block_"):
        _, idx, part = keras_name.split("_", 2)
        return f"expanded_conv_{idx}/{part}"
    return keras_name


def _extra_layers(
    b: _Builder, cfg: SSDConfig, maps: list[Any], base: str, depthwise: bool
) -> list[int]:
    """Four stride-2 feature maps after the backbone's two; returns their trunk unit indices."""
    x = maps[-1]
    units: list[int] = []
    for index, depth in enumerate(LAYER_DEPTHS):
        if depth < 0:
            continue
        half, full = cfg.depth(depth / 2), cfg.depth(depth)
        x = b.conv(x, f"{base}_1_Conv2d_{index}_1x1_{half}", half, 1)
        scope = f"{base}_2_Conv2d_{index}_3x3_s2_{full}"
        if depthwise:
            x = b.conv(x, scope + "_depthwise", None, 3, 2)
            x = b.conv(x, scope, full, 1)
        else:
            x = b.conv(x, scope, full, 3, 2)
        maps.append(x)
        units.append(len(b.units) - 1)
    return units


def build(cfg: SSDConfig) -> SSDModel:
    """Random-weight detector graph; load weights with _recover / _checkpoint afterwards."""
    if cfg.arch not in ARCHS:
        raise UsageError(f"unknown --arch {cfg.arch!r}", f"choose one of {', '.join(ARCHS)}")
    if cfg.size < 64 or cfg.num_classes < 1:
        raise UsageError(f"need size >= 64 and >= 1 class, got {cfg.size}, {cfg.num_classes}")
    b = _Builder()
    image = b.k.Input((cfg.size, cfg.size, 3), batch_size=1, name="normalized_input_image_tensor")
    lite = cfg.arch == "ssdlite_mobilenet_v2"
    if lite:
        maps, feature_units = _mobilenet_v2(b, cfg, image)
        base = "FeatureExtractor/MobilenetV2/layer_19"
    else:
        maps, feature_units = _mobilenet_v1(b, cfg, image)
        base = "FeatureExtractor/MobilenetV1/Conv2d_13_pointwise"
    feature_units += _extra_layers(b, cfg, maps, base, depthwise=lite)
    trunk = list(b.units)
    per_location = [len(s) for s in ssd.box_specs(len(maps), **cfg.anchors.kwargs())]
    boxes, scores, heads = [], [], []
    for i, (fmap, n) in enumerate(zip(maps, per_location, strict=True)):
        start = len(b.units)
        box = _predictor(b, fmap, f"BoxPredictor_{i}/BoxEncodingPredictor", n * 4, lite)
        cls = _predictor(
            b, fmap, f"BoxPredictor_{i}/ClassPredictor", n * (cfg.num_classes + 1), lite
        )
        mid = start + (2 if lite else 1)
        heads.append({"box": b.units[start:mid], "class": b.units[mid:]})
        boxes.append(b.k.layers.Reshape((-1, 4), name=f"BoxPredictor_{i}__Reshape")(box))
        scores.append(
            b.k.layers.Reshape((-1, cfg.num_classes + 1), name=f"BoxPredictor_{i}__Reshape_1")(cls)
        )
    box_out = b.k.layers.Concatenate(axis=1, name="box_encodings")(boxes)
    cls_out = b.k.layers.Concatenate(axis=1, name="class_predictions")(scores)
    cls_out = b.k.layers.Activation("sigmoid", name="convert_scores")(cls_out)
    model = b.k.Model(image, [box_out, cls_out], name=cfg.arch)
    sizes = [(int(m.shape[1]), int(m.shape[2])) for m in maps]
    return SSDModel(cfg, model, trunk, feature_units, heads, sizes, per_location, b.scopes)


def _predictor(b: _Builder, x: Any, scope: str, outputs: int, depthwise: bool) -> Any:
    if depthwise:
        x = b.conv(x, scope + "_depthwise", None, 3)
    return b.conv(x, scope, outputs, 1, bn=False, relu=False)


def complexity(model: Any) -> tuple[int, int]:
    """(parameters, multiply-adds) with batch norm folded, as the papers count them."""
    from tools._fold import units_in_order

    params = madds = 0
    for unit in units_in_order(model):
        kernel = unit.conv.get_weights()[0]
        out_ch = kernel.shape[-1] * (kernel.shape[-2] if unit.kind == "depthwise" else 1)
        params += int(kernel.size) + int(out_ch)
        spatial = 1
        shape = unit.conv.output.shape
        if len(shape) == 4:
            spatial = int(shape[1]) * int(shape[2])
        madds += spatial * int(kernel.size)
    return params, madds
