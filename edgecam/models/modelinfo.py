"""Look inside a .tflite file without an interpreter.

Reading the flatbuffer directly (pip package ``tflite``) is safe on any bytes, whereas the
TFLite runtimes can segfault on a malformed file; so edgecam checks every file here first
and only hands well-formed ones to the interpreter. It also yields what the runtime does not
expose: the op list, the ``TFLite_Detection_PostProcess`` options (flexbuffer-encoded) and the
label files that TFLite metadata appends to the model as a zip archive.
"""

from __future__ import annotations

import functools
import importlib
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from edgecam import dirs
from edgecam.errors import ModelError

POSTPROCESS_OP = "TFLite_Detection_PostProcess"
#: The op's outputs in its own order; the subgraph may list them in any order (TF2 exports).
POSTPROCESS_ROLES = ("boxes", "classes", "scores", "count")
_IDENTIFIER = b"TFL3"
#: Largest model file read: a .tflite for a Pi is tens of MB; this bounds a wrong path.
MAX_MODEL_BYTES = 512 << 20


@dataclass(frozen=True)
class _Schema:
    model: Any  # tflite.Model.Model
    op_names: dict[int, str]
    dtypes: dict[int, str]
    custom: int


@functools.cache
def _schema() -> _Schema:
    """The `tflite` flatbuffer reader (~190 modules, ~3 MB), imported on first use: a run of
    a sha256-verified manifest model never parses its file."""
    from tflite.BuiltinOperator import BuiltinOperator
    from tflite.Model import Model
    from tflite.TensorType import TensorType

    return _Schema(
        Model,
        {v: k for k, v in vars(BuiltinOperator).items() if k.isupper()},
        {v: k.lower() for k, v in vars(TensorType).items() if k.isupper()},
        BuiltinOperator.CUSTOM,
    )


@dataclass(frozen=True)
class TensorDesc:
    """One input or output tensor as stored in the file.

    shape: as stored; () when the converter left it unset (postprocess outputs), in which
    case ``shape`` is inferred from the op options when possible. scale/zero_point: per-tensor
    quantization, None for float tensors. role: boxes/classes/scores/count for postprocess outputs.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: float | None = None
    zero_point: int | None = None
    role: str | None = None


@dataclass(frozen=True)
class PostprocessOptions:
    """Attributes of a TFLite_Detection_PostProcess op (what the model's NMS does)."""

    num_classes: int
    max_detections: int
    max_classes_per_detection: int
    detections_per_class: int
    use_regular_nms: bool
    nms_score_threshold: float
    nms_iou_threshold: float
    y_scale: float
    x_scale: float
    h_scale: float
    w_scale: float


@dataclass(frozen=True)
class ModelInfo:
    """What a .tflite file declares. num_classes: classifier output width, postprocess
    num_classes, or (raw SSD head) class-score columns minus the background column."""

    version: int
    description: str
    inputs: tuple[TensorDesc, ...]
    outputs: tuple[TensorDesc, ...]
    ops: tuple[str, ...]
    custom_ops: tuple[str, ...]
    postprocess: PostprocessOptions | None
    embedded_files: tuple[str, ...]
    task: Literal["classification", "detection"] | None
    num_classes: int | None


def check_identifier(data: bytes, source: str) -> None:
    if len(data) < 8 or data[4:8] != _IDENTIFIER:
        got = data[4:8] if len(data) >= 8 else f"{len(data)} bytes"
        raise ModelError(
            f"{source}: not a TFLite model (file identifier {got!r}, expected {_IDENTIFIER!r})",
            hint="re-fetch the file or check that it is a .tflite flatbuffer",
        )


def inspect_model(path: Path) -> ModelInfo:
    """Parse ``path``; any malformation becomes a one-line ModelError naming the file."""
    try:
        data = dirs.read_regular_file(path, MAX_MODEL_BYTES)
    except OSError as exc:
        raise ModelError(f"{path}: cannot read model file: {exc.strerror or exc}") from exc
    return inspect_bytes(data, str(path))


def inspect_bytes(data: bytes, source: str) -> ModelInfo:
    check_identifier(data, source)
    try:
        return _inspect(data)
    except ModelError as exc:
        raise ModelError(f"{source}: {exc.message}", hint=exc.hint) from exc
    except Exception as exc:  # flatbuffers raises IndexError, struct.error, ... on bad bytes
        detail = str(exc)[:100]
        raise ModelError(
            f"{source}: malformed TFLite flatbuffer ({type(exc).__name__}: {detail})",
            hint="the file is truncated or corrupt; re-fetch it",
        ) from exc


def _inspect(data: bytes) -> ModelInfo:
    model = _schema().model.GetRootAsModel(data, 0)
    _check_buffers(model, len(data))
    if model.SubgraphsLength() < 1:
        raise ModelError("model has no subgraph")
    graph = model.Subgraphs(0)
    n_tensors = graph.TensorsLength()
    codes = [_op_name(model.OperatorCodes(i)) for i in range(model.OperatorCodesLength())]
    op_names = [name for name, _ in codes]
    custom = {name for name, is_custom in codes if is_custom}
    used: list[str] = []
    postprocess: PostprocessOptions | None = None
    roles: dict[int, str] = {}
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        name = op_names[op.OpcodeIndex()]
        if name not in used:
            used.append(name)
        if name == POSTPROCESS_OP:
            postprocess = _postprocess_options(op.CustomOptionsAsNumpy().tobytes())
            for k in range(min(op.OutputsLength(), len(POSTPROCESS_ROLES))):
                roles[int(op.Outputs(k))] = POSTPROCESS_ROLES[k]
    for index in (*_indices(graph, "Inputs"), *_indices(graph, "Outputs")):
        if not 0 <= index < n_tensors:
            raise ModelError(f"graph input/output refers to tensor {index} of {n_tensors}")
    inputs = tuple(_tensor(graph.Tensors(i)) for i in _indices(graph, "Inputs"))
    outputs = tuple(
        _tensor(graph.Tensors(i), roles.get(i), postprocess) for i in _indices(graph, "Outputs")
    )
    task, num_classes = _task(outputs, postprocess)
    desc = model.Description()
    return ModelInfo(
        version=int(model.Version()),
        description=desc.decode("utf-8", "replace") if desc else "",
        inputs=inputs,
        outputs=outputs,
        ops=tuple(used),
        custom_ops=tuple(n for n in used if n in custom),
        postprocess=postprocess,
        embedded_files=tuple(embedded_files(data)),
        task=task,
        num_classes=num_classes,
    )


def _indices(graph: Any, which: str) -> list[int]:
    return [int(getattr(graph, which)(k)) for k in range(getattr(graph, f"{which}Length")())]


def _op_name(code: Any) -> tuple[str, bool]:
    """(op name, is custom op)."""
    # Newer schemas moved the code to a 32-bit field; old files only fill the deprecated one.
    builtin = max(int(code.BuiltinCode()), int(code.DeprecatedBuiltinCode()))
    schema = _schema()
    if builtin == schema.custom:
        custom = code.CustomCode()
        return (custom.decode("utf-8", "replace") if custom else "CUSTOM"), True
    return schema.op_names.get(builtin, f"BUILTIN_{builtin}"), False


def _check_buffers(model: Any, length: int) -> None:
    """Every weight buffer must lie inside the file: this is what catches truncation."""
    for i in range(model.BuffersLength()):
        buf = model.Buffers(i)
        tab = buf._tab
        o = tab.Offset(4)
        if o:
            start, n = tab.Vector(o), tab.VectorLen(o)
            if start + n > length:
                raise ModelError(
                    f"buffer {i} ends at byte {start + n}, file has {length} (truncated)"
                )
        offset, size = int(buf.Offset()), int(buf.Size())
        if offset > 1 and offset + size > length:
            raise ModelError(
                f"buffer {i} ends at byte {offset + size}, file has {length} (truncated)"
            )


def _tensor(t: Any, role: str | None = None, pp: PostprocessOptions | None = None) -> TensorDesc:
    raw_shape = t.ShapeAsNumpy()
    shape = tuple(int(d) for d in raw_shape) if not isinstance(raw_shape, int) else ()
    if not shape and role and pp:
        n = pp.max_detections
        shape = {"boxes": (1, n, 4), "classes": (1, n), "scores": (1, n), "count": (1,)}[role]
    scale: float | None = None
    zero_point: int | None = None
    q = t.Quantization()
    if q is not None and q.ScaleLength() >= 1 and q.ZeroPointLength() >= 1:
        scale, zero_point = float(q.Scale(0)), int(q.ZeroPoint(0))
    name = t.Name()
    return TensorDesc(
        name=name.decode("utf-8", "replace") if name else "",
        shape=shape,
        dtype=_schema().dtypes.get(int(t.Type()), f"type_{t.Type()}"),
        scale=scale,
        zero_point=zero_point,
        role=role,
    )


def _postprocess_options(raw: bytes) -> PostprocessOptions:
    # flatbuffers ships no type information; typed as Any here rather than in the mypy config.
    flexbuffers: Any = importlib.import_module("flatbuffers.flexbuffers")
    try:
        opts = flexbuffers.GetRoot(raw).Value
    except Exception as exc:
        raise ModelError(f"{POSTPROCESS_OP} options are not a flexbuffer map ({exc})") from exc
    if not isinstance(opts, dict):
        raise ModelError(f"{POSTPROCESS_OP} options: expected a map, got {type(opts).__name__}")
    required = ("num_classes", "max_detections", "max_classes_per_detection", "nms_score_threshold",
                "nms_iou_threshold", "y_scale", "x_scale", "h_scale", "w_scale")  # fmt: skip
    missing = [key for key in required if key not in opts]
    if missing:
        raise ModelError(f"{POSTPROCESS_OP} options lack {', '.join(missing)}")
    return PostprocessOptions(
        num_classes=int(opts["num_classes"]),
        max_detections=int(opts["max_detections"]),
        max_classes_per_detection=int(opts["max_classes_per_detection"]),
        # Defaults of the TFLite kernel when the attribute is absent.
        detections_per_class=int(opts.get("detections_per_class", 100)),
        use_regular_nms=bool(opts.get("use_regular_nms", False)),
        nms_score_threshold=float(opts["nms_score_threshold"]),
        nms_iou_threshold=float(opts["nms_iou_threshold"]),
        y_scale=float(opts["y_scale"]),
        x_scale=float(opts["x_scale"]),
        h_scale=float(opts["h_scale"]),
        w_scale=float(opts["w_scale"]),
    )


def _task(
    outputs: tuple[TensorDesc, ...], pp: PostprocessOptions | None
) -> tuple[Literal["classification", "detection"] | None, int | None]:
    if pp is not None:
        return "detection", pp.num_classes
    raw = raw_ssd_outputs(outputs)
    if raw is not None:
        # TF object-detection exports score a background column first (add_background_class).
        return "detection", outputs[raw[1]].shape[-1] - 1
    if len(outputs) == 1:
        dims = [d for d in outputs[0].shape if d != 1]
        if len(dims) == 1:
            return "classification", dims[0]
    return None, None


def raw_ssd_outputs(outputs: tuple[TensorDesc, ...]) -> tuple[int, int] | None:
    """(box encodings index, class scores index) of an SSD head without postprocess op:
    a (1, N, 4) tensor and a (1, N, C) tensor, C > 1, with the same N."""
    boxes = [i for i, t in enumerate(outputs) if len(t.shape) == 3 and t.shape[2] == 4]
    for b in boxes:
        n = outputs[b].shape[1]
        for s, t in enumerate(outputs):
            if s != b and len(t.shape) == 3 and t.shape[1] == n and t.shape[2] > 1:
                return b, s
    return None


def embedded_files(data: bytes) -> dict[str, int]:
    """Names and sizes of the files TFLite metadata appended as a zip (empty when none)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            return {i.filename: i.file_size for i in zf.infolist() if not i.is_dir()}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return {}


def embedded_label_file(data: bytes) -> tuple[str, bytes] | None:
    """(name, content) of the label file embedded in a model, if it has exactly one candidate.

    The metadata flatbuffer names the file's role, but its schema is not on PyPI; by convention
    the label file is the .txt member, preferably one with "label" in its name.
    """
    names = [n for n in embedded_files(data) if n.lower().endswith(".txt")]
    labelish = [n for n in names if "label" in n.lower()]
    pick = labelish if len(labelish) == 1 else names
    if len(pick) != 1:
        return None
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            return pick[0], zf.read(pick[0])
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError):
        return None
