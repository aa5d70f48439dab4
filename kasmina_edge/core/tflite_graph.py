"""What is inside a ``.tflite``: its ops and tensors, read from the flatbuffer, and interpreters to run it.

The flatbuffer is parsed with the schema that ships with ``ai-edge-litert`` (a base dependency), so this
module works on a device without torch. Running uses LiteRT without its default XNNPACK delegate (which
hides every op behind one DELEGATE node) or with the reference kernels, the ones TFLite Micro mirrors.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

_DTYPES: dict[int, str] = {}
_OP_NAMES: dict[int, str] = {}


def _schema() -> Any:
    from ai_edge_litert import schema_py_generated

    if not _DTYPES:
        for name, code in vars(schema_py_generated.TensorType).items():
            if not name.startswith("_"):
                _DTYPES[code] = name.lower()
        for name, code in vars(schema_py_generated.BuiltinOperator).items():
            if not name.startswith("_"):
                _OP_NAMES[code] = name
    return schema_py_generated


@dataclass(frozen=True)
class GraphTensor:
    """One tensor of the flatbuffer as stored: per-channel grids, buffer, bytes of constant data.

    Not :class:`kasmina_edge.core.tensors.TensorInfo`, which describes an artifact's input or output as a
    runtime sees it (one per-tensor grid and the arithmetic on it).
    """

    index: int
    name: str
    shape: tuple[int, ...]
    shape_signature: tuple[int, ...]
    dtype: str  # "int8", "float32", ...
    scales: tuple[float, ...]
    zero_points: tuple[int, ...]
    quantized_dimension: int
    buffer: int
    constant_bytes: int  # bytes of data stored in the model (weights, biases, shapes); 0 for activations

    @property
    def is_constant(self) -> bool:
        return self.constant_bytes > 0

    @property
    def is_dynamic(self) -> bool:
        return any(d < 0 for d in self.shape_signature) or any(d < 0 for d in self.shape)

    @property
    def non_trivial_dims(self) -> int:
        return sum(1 for d in self.shape if d != 1)

    @property
    def per_channel(self) -> bool:
        return len(self.scales) > 1


@dataclass(frozen=True)
class OpInfo:
    index: int
    name: str  # builtin operator name, e.g. CONV_2D, or CUSTOM:<code>
    version: int
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    fused_activation: str | None = None  # RELU, RELU6, ... where the op fuses one; None otherwise


# builtin-options tables that carry a fused activation function
_FUSED_OPTIONS = (
    "Conv2DOptions",
    "DepthwiseConv2DOptions",
    "Pool2DOptions",
    "FullyConnectedOptions",
    "ConcatenationOptions",
    "AddOptions",
    "MulOptions",
    "SubOptions",
)


def _fused_activation(schema: Any, op: Any) -> str | None:
    kind = op.BuiltinOptionsType()
    for name in _FUSED_OPTIONS:
        if kind == getattr(schema.BuiltinOptions, name):
            table = op.BuiltinOptions()
            opts = getattr(schema, name)()
            opts.Init(table.Bytes, table.Pos)
            code = opts.FusedActivationFunction()
            names = {v: k for k, v in vars(schema.ActivationFunctionType).items() if not k.startswith("_")}
            return None if code == 0 else names.get(code, str(code))
    return None


@dataclass(frozen=True)
class TfliteGraph:
    ops: tuple[OpInfo, ...]
    tensors: tuple[GraphTensor, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    subgraphs: int
    size_bytes: int

    def op_names(self) -> list[str]:
        return [op.name for op in self.ops]

    def op_counts(self) -> dict[str, int]:
        return dict(Counter(self.op_names()))

    def input_tensors(self) -> list[GraphTensor]:
        return [self.tensors[i] for i in self.inputs]

    def output_tensors(self) -> list[GraphTensor]:
        return [self.tensors[i] for i in self.outputs]

    def parameter_bytes(self) -> int:
        """Bytes of constant data (weights, biases, shape operands) the model carries."""
        return sum(t.constant_bytes for t in self.tensors)

    def activation_dtypes(self) -> set[str]:
        return {t.dtype for t in self.tensors if not t.is_constant}


def read_graph(data: bytes) -> TfliteGraph:
    """Parse the first subgraph of a TFLite flatbuffer into plain records."""
    schema = _schema()
    model = schema.Model.GetRootAs(data, 0)
    if model.SubgraphsLength() < 1:
        raise ValueError("the TFLite model has no subgraph")
    codes: list[tuple[str, int]] = []
    for i in range(model.OperatorCodesLength()):
        oc = model.OperatorCodes(i)
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
        name = _OP_NAMES.get(code, f"OP_{code}")
        if name == "CUSTOM":
            custom = oc.CustomCode()
            name = f"CUSTOM:{custom.decode() if custom else '?'}"
        codes.append((name, oc.Version()))
    sg = model.Subgraphs(0)
    tensors: list[GraphTensor] = []
    for i in range(sg.TensorsLength()):
        t = sg.Tensors(i)
        q = t.Quantization()
        scales: tuple[float, ...] = ()
        zps: tuple[int, ...] = ()
        qdim = 0
        if q is not None:
            if q.ScaleLength():
                scales = tuple(float(s) for s in q.ScaleAsNumpy())
            if q.ZeroPointLength():
                zps = tuple(int(z) for z in q.ZeroPointAsNumpy())
            qdim = q.QuantizedDimension()
        shape = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()
        sig = tuple(int(d) for d in t.ShapeSignatureAsNumpy()) if t.ShapeSignatureLength() else shape
        buf = model.Buffers(t.Buffer()) if t.Buffer() < model.BuffersLength() else None
        nbytes = 0
        if buf is not None and t.Buffer() > 0:
            nbytes = buf.DataLength() or (int(buf.Size()) if buf.Offset() > 1 else 0)
        raw_name = t.Name()
        tensors.append(
            GraphTensor(
                index=i,
                name=raw_name.decode(errors="replace") if raw_name else f"t{i}",
                shape=shape,
                shape_signature=sig,
                dtype=_DTYPES.get(t.Type(), f"type{t.Type()}"),
                scales=scales,
                zero_points=zps,
                quantized_dimension=qdim,
                buffer=t.Buffer(),
                constant_bytes=nbytes,
            )
        )
    ops: list[OpInfo] = []
    for i in range(sg.OperatorsLength()):
        op = sg.Operators(i)
        name, version = codes[op.OpcodeIndex()]
        ins = tuple(int(x) for x in op.InputsAsNumpy()) if op.InputsLength() else ()
        outs = tuple(int(x) for x in op.OutputsAsNumpy()) if op.OutputsLength() else ()
        ops.append(
            OpInfo(
                index=i,
                name=name,
                version=version,
                inputs=ins,
                outputs=outs,
                fused_activation=_fused_activation(schema, op),
            )
        )
    return TfliteGraph(
        ops=tuple(ops),
        tensors=tuple(tensors),
        inputs=tuple(int(x) for x in sg.InputsAsNumpy()),
        outputs=tuple(int(x) for x in sg.OutputsAsNumpy()),
        subgraphs=model.SubgraphsLength(),
        size_bytes=len(data),
    )


def buffer_ranges(data: bytes) -> dict[int, tuple[int, int]]:
    """Byte range ``(offset, length)`` inside ``data`` of every non-empty inline buffer, by buffer index."""
    schema = _schema()
    model = schema.Model.GetRootAs(data, 0)
    ranges: dict[int, tuple[int, int]] = {}
    for i in range(model.BuffersLength()):
        buf = model.Buffers(i)
        n = buf.DataLength()
        if n:
            # flatbuffers keeps a vector's start behind field 4 (``data``) of the table
            start = buf._tab.Vector(buf._tab.Offset(4))
            ranges[i] = (int(start), int(n))
    return ranges


def constant_array(data: bytes, tensor: GraphTensor) -> np.ndarray:
    """The stored values of a constant tensor, shaped and typed."""
    if not tensor.is_constant:
        raise ValueError(f"tensor {tensor.name!r} holds no constant data")
    start, length = buffer_ranges(data)[tensor.buffer]
    dtype = np.dtype(tensor.dtype if tensor.dtype != "int4" else "int8")
    arr = np.frombuffer(data, dtype=dtype, count=length // dtype.itemsize, offset=start)
    return arr.reshape(tensor.shape) if int(np.prod(tensor.shape)) == arr.size else arr


# ---------------------------------------------------------------- running


def open_interpreter(data: bytes, *, reference: bool = False, num_threads: int = 1) -> Any:
    """A LiteRT interpreter without the default delegate; ``reference=True`` uses the reference kernels."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.BUILTIN_REF if reference else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interp = Interpreter(
        model_content=bytes(data), experimental_op_resolver_type=resolver, num_threads=num_threads
    )
    interp.allocate_tensors()
    return interp


def run_interpreter(interp: Any, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Run one batch-1 invocation; inputs in the model's input order, already of the model's dtype."""
    for detail, value in zip(interp.get_input_details(), inputs, strict=True):
        interp.set_tensor(detail["index"], np.ascontiguousarray(value, dtype=detail["dtype"]))
    interp.invoke()
    return [interp.get_tensor(d["index"]).copy() for d in interp.get_output_details()]


def run_batched(data: bytes, inputs: list[np.ndarray], *, reference: bool = False) -> list[np.ndarray]:
    """Run every row of the batched inputs through a batch-1 model; outputs stacked row by row."""
    interp = open_interpreter(data, reference=reference)
    n = inputs[0].shape[0]
    rows: list[list[np.ndarray]] = [run_interpreter(interp, [x[i : i + 1] for x in inputs]) for i in range(n)]
    return [np.concatenate([r[k] for r in rows], axis=0) for k in range(len(rows[0]))] if rows else []
