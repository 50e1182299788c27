"""Read the convolution weights out of an existing .tflite file, as float32 in Keras layout.

Why: the reference float checkpoints cannot be downloaded everywhere, but a prebuilt int8
model holds the same network. Dequantizing its weights (per-tensor or per-channel scales,
int32 biases × bias scale) and folding them into the reference Keras graph recovers a float
model good enough to requantize. Batch norm was folded into each conv's weights and bias at
export time, so every recovered layer is "conv + bias"; the Keras side makes its BN an
identity plus that bias.

Layer names differ between TF1 slim, TF2 and Keras exports (and TFLite merges them), so
layers are matched by graph position, never by name. Needs only the ``tflite`` flatbuffer
package, not TensorFlow.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import tflite

from edgecam.errors import ModelError

FloatArray = npt.NDArray[np.float32]
LayerKind = Literal["conv", "depthwise", "dense"]

_WEIGHT_OPS = {
    tflite.BuiltinOperator.CONV_2D: "conv",
    tflite.BuiltinOperator.DEPTHWISE_CONV_2D: "depthwise",
    tflite.BuiltinOperator.FULLY_CONNECTED: "dense",
}
_NUMPY_TYPES: dict[int, type[np.generic]] = {
    tflite.TensorType.FLOAT32: np.float32,
    tflite.TensorType.FLOAT16: np.float16,
    tflite.TensorType.INT32: np.int32,
    tflite.TensorType.UINT8: np.uint8,
    tflite.TensorType.INT8: np.int8,
    tflite.TensorType.INT64: np.int64,
}
_ACTIVATIONS = {0: "none", 1: "relu", 2: "relu_n1_to_1", 3: "relu6", 4: "tanh"}


@dataclass(frozen=True)
class WeightLayer:
    """One conv/depthwise/dense op with float weights in Keras layout.

    kernel: conv (kh, kw, in, out); depthwise (kh, kw, in, multiplier); dense (in, out).
    bias: (out,) float32, zeros when the op had none. ``activation`` is the fused one; QAT
    uint8 models often express ReLU6 only through the output range, so it is informative.
    """

    op_index: int
    kind: LayerKind
    kernel: FloatArray
    bias: FloatArray
    stride: int
    padding: Literal["same", "valid"]
    activation: str
    input_tensor: int
    output_tensor: int
    output_shape: tuple[int, ...]

    @property
    def out_channels(self) -> int:
        return int(self.bias.shape[0])

    def describe(self) -> str:
        return f"{self.kind} {tuple(self.kernel.shape)} stride {self.stride} (op {self.op_index})"


@dataclass
class TFLiteGraph:
    """The weighted layers of a model's main subgraph plus just enough connectivity."""

    path: Path
    layers: list[WeightLayer]
    op_types: list[str]
    op_inputs: list[list[int]]
    op_outputs: list[list[int]]
    consumers: dict[int, list[int]] = field(default_factory=dict)
    producers: dict[int, int] = field(default_factory=dict)
    tensor_names: list[str] = field(default_factory=list)
    tensor_shapes: list[tuple[int, ...]] = field(default_factory=list)
    inputs: list[int] = field(default_factory=list)
    outputs: list[int] = field(default_factory=list)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.tensor_shapes[self.inputs[0]] if self.inputs else ()

    def downstream_layers(self, layer: WeightLayer) -> list[WeightLayer]:
        """Weighted layers reachable from ``layer``'s output (through any ops)."""
        by_op = {lay.op_index: lay for lay in self.layers}
        seen: set[int] = set()
        stack = list(self.consumers.get(layer.output_tensor, []))
        found: list[WeightLayer] = []
        while stack:
            op = stack.pop()
            if op in seen:
                continue
            seen.add(op)
            if op in by_op:
                found.append(by_op[op])
            for tensor in self.op_outputs[op]:
                stack.extend(self.consumers.get(tensor, []))
        return sorted(found, key=lambda lay: lay.op_index)

    def direct_consumers(self, layer: WeightLayer) -> list[WeightLayer]:
        """Weighted layers fed by ``layer``'s output, looking through shape-only ops."""
        passthrough = {"RESHAPE", "DEQUANTIZE", "QUANTIZE"}
        by_op = {lay.op_index: lay for lay in self.layers}
        found: list[WeightLayer] = []
        stack = list(self.consumers.get(layer.output_tensor, []))
        while stack:
            op = stack.pop()
            if op in by_op:
                found.append(by_op[op])
            elif self.op_types[op] in passthrough:
                for tensor in self.op_outputs[op]:
                    stack.extend(self.consumers.get(tensor, []))
        return found

    def source_layer(self, layer: WeightLayer) -> WeightLayer | None:
        """The weighted layer whose output feeds ``layer`` (through residual ADDs: None)."""
        by_out = {lay.output_tensor: lay for lay in self.layers}
        tensor = layer.input_tensor
        while tensor not in by_out:
            op = self.producers.get(tensor)
            if op is None or self.op_types[op] not in {"RESHAPE", "DEQUANTIZE", "QUANTIZE"}:
                return None
            tensor = self.op_inputs[op][0]
        return by_out[tensor]


def read_graph(path: Path) -> TFLiteGraph:
    """Parse ``path`` and dequantize every conv/depthwise/dense weight to float32."""
    try:
        data = path.read_bytes()
        model = tflite.Model.GetRootAsModel(data, 0)
        if model.SubgraphsLength() < 1:
            raise ValueError("no subgraph")
        sub = model.Subgraphs(0)
    except (OSError, ValueError, IndexError, TypeError) as exc:
        raise ModelError(
            f"cannot read TFLite model {path}: {exc}",
            "pass a .tflite flatbuffer (e.g. mobilenet_v2_1.0_224_quant.tflite)",
        ) from exc
    reader = _Reader(data, model, sub)
    graph = TFLiteGraph(
        path=path,
        layers=[],
        op_types=[],
        op_inputs=[],
        op_outputs=[],
        tensor_names=[sub.Tensors(i).Name().decode() for i in range(sub.TensorsLength())],
        tensor_shapes=[reader.shape(i) for i in range(sub.TensorsLength())],
        inputs=[int(sub.Inputs(i)) for i in range(sub.InputsLength())],
        outputs=[int(sub.Outputs(i)) for i in range(sub.OutputsLength())],
    )
    consumers: dict[int, list[int]] = defaultdict(list)
    for i in range(sub.OperatorsLength()):
        op = sub.Operators(i)
        ins = [int(op.Inputs(j)) for j in range(op.InputsLength())]
        outs = [int(op.Outputs(j)) for j in range(op.OutputsLength())]
        graph.op_types.append(reader.op_name(op))
        graph.op_inputs.append(ins)
        graph.op_outputs.append(outs)
        for t in ins:
            if t >= 0:
                consumers[t].append(i)
        for t in outs:
            graph.producers[t] = i
        layer = reader.weight_layer(i, op, ins, outs)
        if layer is not None:
            graph.layers.append(layer)
    graph.consumers = dict(consumers)
    return graph


class _Reader:
    """Flatbuffer access helpers bound to one model."""

    def __init__(self, data: bytes, model: tflite.Model, sub: tflite.SubGraph) -> None:
        self.data = data
        self.model = model
        self.sub = sub
        self.producers: dict[int, int] = {}
        for i in range(sub.OperatorsLength()):
            op = sub.Operators(i)
            for j in range(op.OutputsLength()):
                self.producers[int(op.Outputs(j))] = i

    def op_name(self, op: tflite.Operator) -> str:
        code = self.model.OperatorCodes(op.OpcodeIndex())
        builtin = max(int(code.BuiltinCode()), int(code.DeprecatedBuiltinCode()))
        if builtin == tflite.BuiltinOperator.CUSTOM:
            return bytes(code.CustomCode()).decode()
        for name, value in vars(tflite.BuiltinOperator).items():
            if value == builtin and not name.startswith("_"):
                return str(name)
        return str(builtin)

    def weight_layer(
        self, index: int, op: tflite.Operator, ins: list[int], outs: list[int]
    ) -> WeightLayer | None:
        code = self.model.OperatorCodes(op.OpcodeIndex())
        builtin = max(int(code.BuiltinCode()), int(code.DeprecatedBuiltinCode()))
        kind = _WEIGHT_OPS.get(builtin)
        if kind is None:
            return None
        raw = self.constant(ins[1])
        out_ch = raw.shape[-1] if kind == "depthwise" else raw.shape[0]
        bias = (
            self.constant(ins[2]).reshape(-1)
            if len(ins) > 2 and ins[2] >= 0
            else np.zeros(out_ch, np.float32)
        )
        stride, padding, act = self._options(kind, op)
        if kind == "conv":
            kernel = raw.transpose(1, 2, 3, 0)
        elif kind == "depthwise":
            in_ch = self.shape(ins[0])[-1]
            kernel = raw.reshape(raw.shape[1], raw.shape[2], in_ch, out_ch // in_ch)
        else:
            kernel = raw.T
        return WeightLayer(
            op_index=index,
            kind=kind,  # type: ignore[arg-type]
            kernel=np.ascontiguousarray(kernel, np.float32),
            bias=bias.astype(np.float32),
            stride=stride,
            padding=padding,
            activation=act,
            input_tensor=ins[0],
            output_tensor=outs[0],
            output_shape=self.shape(outs[0]),
        )

    def shape(self, tensor: int) -> tuple[int, ...]:
        t = self.sub.Tensors(tensor)
        return tuple(int(v) for v in t.ShapeAsNumpy()) if t.ShapeLength() else ()

    def _options(self, kind: str, op: tflite.Operator) -> tuple[int, Literal["same", "valid"], str]:
        table = op.BuiltinOptions()
        if kind == "dense" or table is None:
            opts_fc = tflite.FullyConnectedOptions()
            if table is not None:
                opts_fc.Init(table.Bytes, table.Pos)
            act = _ACTIVATIONS.get(int(opts_fc.FusedActivationFunction()), "other")
            return 1, "valid", act
        opts: tflite.Conv2DOptions | tflite.DepthwiseConv2DOptions
        opts = tflite.Conv2DOptions() if kind == "conv" else tflite.DepthwiseConv2DOptions()
        opts.Init(table.Bytes, table.Pos)
        padding: Literal["same", "valid"] = (
            "same" if opts.Padding() == tflite.Padding.SAME else "valid"
        )
        act = _ACTIVATIONS.get(int(opts.FusedActivationFunction()), "other")
        return int(opts.StrideH()), padding, act

    def constant(self, tensor: int) -> FloatArray:
        """A constant tensor's value as float32, dequantized; follows a DEQUANTIZE op."""
        t = self.sub.Tensors(tensor)
        raw = self._buffer(t)
        if raw is None:
            producer = self.producers.get(tensor)
            op = self.sub.Operators(producer) if producer is not None else None
            if op is not None and self.op_name(op) == "DEQUANTIZE":
                return self.constant(int(op.Inputs(0)))
            raise ModelError(
                f"TFLite tensor {t.Name().decode()!r} has no constant data",
                "weights computed at run time cannot be recovered",
            )
        return _dequantize(raw, t.Quantization())

    def _buffer(self, t: tflite.Tensor) -> npt.NDArray[np.generic] | None:
        dtype = _NUMPY_TYPES.get(int(t.Type()))
        buf = self.model.Buffers(t.Buffer())
        if dtype is None or buf is None:
            return None
        offset = int(buf.Offset()) if hasattr(buf, "Offset") else 0
        if offset > 1:
            blob = self.data[offset : offset + int(buf.Size())]
        elif buf.DataLength():
            blob = buf.DataAsNumpy().tobytes()
        else:
            return None
        shape = tuple(int(v) for v in t.ShapeAsNumpy()) if t.ShapeLength() else ()
        return np.frombuffer(blob, dtype=dtype).reshape(shape)


def _dequantize(
    raw: npt.NDArray[np.generic], q: tflite.QuantizationParameters | None
) -> FloatArray:
    """(q - zero_point) * scale with per-tensor or per-axis parameters; floats pass through."""
    if raw.dtype in (np.float32, np.float16):
        return raw.astype(np.float32)
    if q is None or q.ScaleLength() == 0:
        return raw.astype(np.float32)
    scale = q.ScaleAsNumpy().astype(np.float64)
    zero = q.ZeroPointAsNumpy().astype(np.float64) if q.ZeroPointLength() else np.zeros_like(scale)
    values = raw.astype(np.float64)
    if scale.size > 1:
        axis = int(q.QuantizedDimension())
        shape = [1] * values.ndim
        shape[axis] = scale.size
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    real: FloatArray = ((values - zero) * scale).astype(np.float32)
    return real


@dataclass(frozen=True)
class OpInfo:
    """One op of subgraph 0 and the types of its tensors (for the "all int8" check)."""

    name: str
    input_types: tuple[str, ...]
    output_types: tuple[str, ...]

    @property
    def float_io(self) -> bool:
        return any(t in ("FLOAT32", "FLOAT16") for t in (*self.input_types, *self.output_types))


def list_ops(data: bytes) -> list[OpInfo]:
    """Ops of a model's main subgraph in execution order."""
    model = tflite.Model.GetRootAsModel(data, 0)
    sub = model.Subgraphs(0)
    reader = _Reader(data, model, sub)
    names = {v: k for k, v in vars(tflite.TensorType).items() if not k.startswith("_")}

    def types(op: tflite.Operator, n: int, get: str) -> tuple[str, ...]:
        idx = [int(getattr(op, get)(j)) for j in range(n)]
        return tuple(names.get(int(sub.Tensors(i).Type()), "?") for i in idx if i >= 0)

    ops = []
    for i in range(sub.OperatorsLength()):
        op = sub.Operators(i)
        ops.append(
            OpInfo(
                reader.op_name(op),
                types(op, op.InputsLength(), "Inputs"),
                types(op, op.OutputsLength(), "Outputs"),
            )
        )
    return ops


#: Ops that may touch float tensors in a "full-int8" model: the detection postprocess op
#: computes in float, the converter dequantizes its inputs (TF1 exports fed it uint8), and
#: QUANTIZE is the float-input boundary.
FLOAT_ALLOWED = frozenset({"TFLite_Detection_PostProcess", "DEQUANTIZE", "QUANTIZE"})


def non_int8_compute_ops(ops: list[OpInfo]) -> list[str]:
    """Names of ops that compute in float although they are not in FLOAT_ALLOWED."""
    return sorted({op.name for op in ops if op.float_io and op.name not in FLOAT_ALLOWED})
