"""``pipeline.config`` of a TF object-detection checkpoint → the converter's settings.

Why: the network, anchors, box coder and NMS must be the ones the checkpoint was trained and
evaluated with. Constants silently disagree with a checkpoint whose config differs — the zoo
SSDLite is 300×300 (1917 anchors) although the paper reports 320×320. TensorFlow's own
``export_tflite_ssd_graph`` reads the same fields; this does the same without the
object-detection protos (not a dependency): a small reader for protobuf text format, then
one check per field this converter depends on. Anything it cannot reproduce exactly is
refused with one line naming the file, field and value.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgecam.errors import ModelError
from tools._ssd_model import AnchorSpec, Arch

Scalar = str | float | bool
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<comment>\#[^\n]*)
      | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
      | (?P<punct>[{}:<>;,])
      | (?P<word>[A-Za-z0-9_.+\-\[\]/]+)
    )""",
    re.VERBOSE,
)


@dataclass
class Message:
    """One text-format message: field name → values in file order (repeated fields)."""

    fields: dict[str, list[Message | Scalar]] = field(default_factory=dict)
    where: str = ""  # "file: line N" of its opening brace, for messages

    def has(self, name: str) -> bool:
        return name in self.fields

    def msg(self, name: str) -> Message | None:
        values = self.fields.get(name)
        if not values:
            return None
        value = values[-1]
        return value if isinstance(value, Message) else None

    def scalars(self, name: str) -> list[Scalar]:
        return [v for v in self.fields.get(name, []) if not isinstance(v, Message)]

    def get(self, name: str, default: Scalar) -> Scalar:
        values = self.scalars(name)
        return values[-1] if values else default

    def only_child(self) -> tuple[str, Message] | None:
        """The set branch of a ``oneof`` wrapper such as ``anchor_generator { ... }``."""
        subs = [(k, v[-1]) for k, v in self.fields.items() if v and isinstance(v[-1], Message)]
        if len(subs) != 1:
            return None
        name, value = subs[0]
        assert isinstance(value, Message)
        return name, value


def _tokens(text: str, source: str) -> Iterator[tuple[str, str, int]]:
    """(kind, text, line) of every token; comments dropped."""
    pos, line = 0, 1
    while True:
        match = _TOKEN.match(text, pos)
        if match is None:
            rest = text[pos:]
            if not rest.strip():
                return
            line += rest[: len(rest) - len(rest.lstrip())].count("\n")
            bad = rest.split()[0][:30]
            raise ModelError(f"{source}: line {line}: cannot parse {bad!r} (protobuf text format)")
        kind = match.lastgroup or ""
        start = match.start(kind)
        line += text.count("\n", pos, start)
        if kind != "comment":
            yield kind, match.group(kind), line
        line += text.count("\n", start, match.end())
        pos = match.end()


def _scalar(kind: str, raw: str) -> Scalar:
    if kind == "string":
        body = raw[1:-1]
        return body.replace('\\"', '"').replace("\\'", "'").replace("\\\\", "\\")
    if raw in ("true", "True"):
        return True
    if raw in ("false", "False"):
        return False
    try:
        return float(raw)
    except ValueError:
        return raw  # an enum value such as SIGMOID


def parse_text(text: str, source: str) -> Message:
    """Protobuf text format → nested :class:`Message` (numbers as float, enums as str)."""
    stream = list(_tokens(text, source))
    root = Message(where=source)
    stack: list[Message] = [root]
    i = 0
    while i < len(stream):
        kind, value, line = stream[i]
        if kind == "punct" and value in "}>":
            if len(stack) == 1:
                raise ModelError(f"{source}: line {line}: unexpected {value!r}")
            stack.pop()
            i += 1
            continue
        if kind == "punct" and value in ";,":
            i += 1
            continue
        if kind != "word":
            raise ModelError(f"{source}: line {line}: expected a field name, got {value!r}")
        name = value
        i += 1
        if i < len(stream) and stream[i][1] == ":":
            i += 1
        if i >= len(stream):
            raise ModelError(f"{source}: line {line}: field {name!r} has no value")
        kind, value, line = stream[i]
        if kind == "punct" and value in "{<":
            child = Message(where=f"{source}: line {line}")
            stack[-1].fields.setdefault(name, []).append(child)
            stack.append(child)
        elif kind in ("word", "string"):
            stack[-1].fields.setdefault(name, []).append(_scalar(kind, value))
        else:
            raise ModelError(f"{source}: line {line}: field {name!r}: unexpected {value!r}")
        i += 1
    if len(stack) != 1:
        raise ModelError(f"{source}: unbalanced braces (a '}}' is missing before the end)")
    return root


@dataclass(frozen=True)
class NmsSettings:
    """``post_processing.batch_non_max_suppression`` of the config (per-class NMS)."""

    score_threshold: float = 0.0
    iou_threshold: float = 0.6
    max_detections_per_class: int = 100
    max_total_detections: int = 100


@dataclass(frozen=True)
class SSDSettings:
    """Everything the converter takes from a pipeline.config."""

    arch: Arch
    height: int
    width: int
    num_classes: int
    depth_multiplier: float
    min_depth: int
    anchors: AnchorSpec
    scales: tuple[float, float, float, float]
    nms: NmsSettings
    score_converter: str
    source: str = ""


class _Fields:
    """Field access with errors naming the config file, the field path and the value."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, value: object, expected: str) -> ModelError:
        return ModelError(
            f"{self.source}: {path}: {value!r} is not supported ({expected})",
            "this converter rebuilds SSD/SSDLite-MobileNet exactly; other configs need "
            "their own export",
        )

    def need(self, msg: Message | None, path: str) -> Message:
        if msg is None:
            raise ModelError(f"{self.source}: {path} is missing", "is this an SSD pipeline.config?")
        return msg

    def number(self, msg: Message, path: str, name: str, default: float) -> float:
        value = msg.get(name, float(default))
        if isinstance(value, bool) or not isinstance(value, float) or not math.isfinite(value):
            raise ModelError(f"{self.source}: {path}.{name}: expected a number, got {value!r}")
        return float(value)

    def integer(self, msg: Message, path: str, name: str, default: int, minimum: int = 1) -> int:
        value = self.number(msg, path, name, default)
        if value != int(value) or value < minimum:
            raise ModelError(
                f"{self.source}: {path}.{name}: expected an integer >= {minimum}, got {value:g}"
            )
        return int(value)

    def flag(self, msg: Message, path: str, name: str, default: bool) -> bool:
        value = msg.get(name, default)
        if not isinstance(value, bool):
            raise ModelError(f"{self.source}: {path}.{name}: expected true or false, got {value!r}")
        return value

    def oneof(self, msg: Message, path: str, allowed: tuple[str, ...]) -> tuple[str, Message]:
        branch = msg.only_child()
        if branch is None or branch[0] not in allowed:
            got = branch[0] if branch else ", ".join(msg.fields) or "nothing"
            raise self.fail(path, got, f"expected {' or '.join(allowed)}")
        return branch


def read_pipeline_config(path: Path) -> SSDSettings:
    """Settings of an SSD pipeline.config; ModelError (one line) on anything else."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"cannot read pipeline config {path}: {exc}") from exc
    return settings_from_text(text, str(path))


def settings_from_text(text: str, source: str) -> SSDSettings:
    f = _Fields(source)
    root = parse_text(text, source)
    model = f.need(root.msg("model"), "model")
    kind, ssd = f.oneof(model, "model", ("ssd",))
    del kind
    arch = _arch(f, ssd)
    _, resizer = f.oneof(
        f.need(ssd.msg("image_resizer"), "model.ssd.image_resizer"),
        "model.ssd.image_resizer",
        ("fixed_shape_resizer",),
    )
    path = "model.ssd.image_resizer.fixed_shape_resizer"
    height = f.integer(resizer, path, "height", 300, minimum=32)
    width = f.integer(resizer, path, "width", 300, minimum=32)
    if height != width:
        raise f.fail(path, f"{height}x{width}", "only square inputs")
    extractor = f.need(ssd.msg("feature_extractor"), "model.ssd.feature_extractor")
    fe = "model.ssd.feature_extractor"
    if f.flag(extractor, fe, "use_explicit_padding", False):
        raise f.fail(fe + ".use_explicit_padding", True, "the rebuild uses SAME padding")
    if f.number(extractor, fe, "pad_to_multiple", 1) != 1:
        raise f.fail(fe + ".pad_to_multiple", extractor.get("pad_to_multiple", 1), "must be 1")
    if not f.flag(ssd, "model.ssd", "add_background_class", True):
        raise f.fail("model.ssd.add_background_class", False, "the postprocess op expects it")
    _check_predictor(f, ssd, arch)
    return SSDSettings(
        arch=arch,
        height=height,
        width=width,
        num_classes=f.integer(ssd, "model.ssd", "num_classes", 0),
        depth_multiplier=f.number(extractor, fe, "depth_multiplier", 1.0),
        min_depth=f.integer(extractor, fe, "min_depth", 0, minimum=0),
        anchors=_anchors(f, ssd),
        scales=_scales(f, ssd),
        nms=_nms(f, ssd),
        score_converter=_score_converter(f, ssd),
        source=source,
    )


def _arch(f: _Fields, ssd: Message) -> Arch:
    extractor = f.need(ssd.msg("feature_extractor"), "model.ssd.feature_extractor")
    fe = "model.ssd.feature_extractor"
    kind = extractor.get("type", "")
    depthwise = f.flag(extractor, fe, "use_depthwise", False)
    if kind == "ssd_mobilenet_v2" and depthwise:
        return "ssdlite_mobilenet_v2"
    if kind == "ssd_mobilenet_v1" and not depthwise:
        return "ssd_mobilenet_v1"
    shown = f"{kind} with use_depthwise {str(depthwise).lower()}"
    raise f.fail(
        fe + ".type", shown, "ssd_mobilenet_v2 + use_depthwise (SSDLite) or ssd_mobilenet_v1"
    )


def _check_predictor(f: _Fields, ssd: Message, arch: Arch) -> None:
    base = "model.ssd.box_predictor"
    _, pred = f.oneof(
        f.need(ssd.msg("box_predictor"), base), base, ("convolutional_box_predictor",)
    )
    path = base + ".convolutional_box_predictor"
    lite = arch == "ssdlite_mobilenet_v2"
    expected: dict[str, tuple[Any, Any, str]] = {
        "use_depthwise": (f.flag(pred, path, "use_depthwise", False), lite, "as the extractor"),
        "kernel_size": (f.number(pred, path, "kernel_size", 1), 3 if lite else 1, "the rebuild's"),
        "num_layers_before_predictor": (
            f.number(pred, path, "num_layers_before_predictor", 0),
            0,
            "the rebuild has none",
        ),
        "box_code_size": (f.number(pred, path, "box_code_size", 4), 4, "4 box coordinates"),
        "apply_sigmoid_to_scores": (
            f.flag(pred, path, "apply_sigmoid_to_scores", False),
            False,
            "the score converter applies it",
        ),
    }
    for name, (got, want, why) in expected.items():
        if got != want:
            raise f.fail(f"{path}.{name}", got, f"expected {want}: {why}")


def _anchors(f: _Fields, ssd: Message) -> AnchorSpec:
    base = "model.ssd.anchor_generator"
    _, gen = f.oneof(f.need(ssd.msg("anchor_generator"), base), base, ("ssd_anchor_generator",))
    path = base + ".ssd_anchor_generator"
    for name in ("scales", "height_stride", "width_stride", "height_offset", "width_offset"):
        if gen.has(name):
            raise f.fail(f"{path}.{name}", gen.scalars(name), "only the default grid and scales")
    for name in ("base_anchor_height", "base_anchor_width"):
        if f.number(gen, path, name, 1.0) != 1.0:
            raise f.fail(f"{path}.{name}", gen.get(name, 1.0), "must be 1.0")
    layers = f.integer(gen, path, "num_layers", 6)
    if layers != 6:
        raise f.fail(path + ".num_layers", layers, "the extractors give 6 feature maps")
    ratios: list[float] = []
    for value in gen.scalars("aspect_ratios"):
        if isinstance(value, bool) or not isinstance(value, float) or value <= 0:
            raise f.fail(path + ".aspect_ratios", value, "positive numbers")
        ratios.append(float(value))
    if not ratios:
        raise ModelError(f"{f.source}: {path}.aspect_ratios is missing")
    return AnchorSpec(
        min_scale=f.number(gen, path, "min_scale", 0.2),
        max_scale=f.number(gen, path, "max_scale", 0.95),
        aspect_ratios=tuple(ratios),
        interpolated_scale_aspect_ratio=f.number(gen, path, "interpolated_scale_aspect_ratio", 1.0),
        reduce_boxes_in_lowest_layer=f.flag(gen, path, "reduce_boxes_in_lowest_layer", True),
    )


def _scales(f: _Fields, ssd: Message) -> tuple[float, float, float, float]:
    base = "model.ssd.box_coder"
    _, coder = f.oneof(f.need(ssd.msg("box_coder"), base), base, ("faster_rcnn_box_coder",))
    path = base + ".faster_rcnn_box_coder"
    values = [
        f.number(coder, path, name, default)
        for name, default in (
            ("y_scale", 10.0),
            ("x_scale", 10.0),
            ("height_scale", 5.0),
            ("width_scale", 5.0),
        )
    ]
    if min(values) <= 0:
        raise f.fail(path, values, "scales must be positive")
    return values[0], values[1], values[2], values[3]


def _nms(f: _Fields, ssd: Message) -> NmsSettings:
    base = "model.ssd.post_processing"
    post = f.need(ssd.msg("post_processing"), base)
    nms = f.need(post.msg("batch_non_max_suppression"), base + ".batch_non_max_suppression")
    path = base + ".batch_non_max_suppression"
    if f.flag(nms, path, "use_class_agnostic_nms", False):
        raise f.fail(path + ".use_class_agnostic_nms", True, "per-class NMS only")
    settings = NmsSettings(
        score_threshold=f.number(nms, path, "score_threshold", 0.0),
        iou_threshold=f.number(nms, path, "iou_threshold", 0.6),
        max_detections_per_class=f.integer(nms, path, "max_detections_per_class", 100),
        max_total_detections=f.integer(nms, path, "max_total_detections", 100),
    )
    if not 0.0 <= settings.score_threshold < 1.0 or not 0.0 < settings.iou_threshold <= 1.0:
        raise f.fail(path, (settings.score_threshold, settings.iou_threshold), "thresholds in 0..1")
    return settings


def _score_converter(f: _Fields, ssd: Message) -> str:
    post = f.need(ssd.msg("post_processing"), "model.ssd.post_processing")
    path = "model.ssd.post_processing"
    converter = post.get("score_converter", "IDENTITY")
    if converter != "SIGMOID":
        raise f.fail(path + ".score_converter", converter, "SIGMOID, as the postprocess op expects")
    if f.number(post, path, "logit_scale", 1.0) != 1.0:
        raise f.fail(path + ".logit_scale", post.get("logit_scale", 1.0), "must be 1.0")
    return str(converter)
