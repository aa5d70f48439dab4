"""Per-op walk of a TFLite flatbuffer or an ONNX graph, and the activation memory plan behind it.

For every op: MACs, other arithmetic, parameter bytes (constants first read by it), activation bytes
read and written, and the dtype it computes in. For the graph: a real memory plan over tensor
lifetimes, placed the way TensorFlow Lite Micro's ``GreedyMemoryPlanner`` places them (largest buffer
first, ties broken as it breaks them, each buffer at the lowest offset that overlaps nothing alive at
the same time), so the planned peak is the arena head TFLite Micro reports, not a sum of tensors.

TFLite is read with ``kasmina_edge.core.tflite_graph`` (the flatbuffer schema from ai-edge-litert,
no torch). ONNX needs the ``onnx`` package (a host extra); QDQ pairs are folded the way ONNX Runtime
fuses them, so an int8 Conv counts int8 tensors, and Q/DQ nodes are not ops of their own.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.profiler.estimate import ArtifactCost

ALIGN = 16  # TFLite Micro aligns every planned buffer to 16 bytes (kBufferAlignment)

# ops that only move or reinterpret bytes: no arithmetic, but their tensors are read and written
_DATA_MOVEMENT = frozenset(
    {
        "RESHAPE", "SQUEEZE", "EXPAND_DIMS", "TRANSPOSE", "PAD", "PADV2", "CONCATENATION", "STRIDED_SLICE",
        "SLICE", "GATHER", "PACK", "UNPACK", "SPLIT", "SPLIT_V", "SPACE_TO_DEPTH", "DEPTH_TO_SPACE",
        "Reshape", "Squeeze", "Unsqueeze", "Transpose", "Pad", "Concat", "Slice", "Gather", "Flatten",
        "Identity", "Split", "Expand",
    }
)  # fmt: skip
# a few transcendental ops cost several operations per element (exp, divide)
_PER_ELEMENT_COST = {
    "SOFTMAX": 5, "LOGISTIC": 4, "TANH": 4, "HARD_SWISH": 3, "QUANTIZE": 2, "DEQUANTIZE": 2,
    "Softmax": 5, "Sigmoid": 4, "Tanh": 4, "HardSwish": 3,
}  # fmt: skip
_REDUCTIONS = frozenset(
    {"MEAN", "SUM", "AVERAGE_POOL_2D", "MAX_POOL_2D", "REDUCE_MAX", "ReduceMean", "ReduceSum", "GlobalAveragePool",
     "AveragePool", "MaxPool", "GlobalMaxPool", "ReduceMax"}
)  # fmt: skip
_NUMPY_BYTES = {"int4": 0.5, "bool": 1}


class GraphError(KasminaError):
    """A model file the profiler cannot read (not a TFLite flatbuffer, not an ONNX graph)."""


def dtype_bytes(dtype: str) -> float:
    if dtype in _NUMPY_BYTES:
        return _NUMPY_BYTES[dtype]
    try:
        return float(np.dtype(dtype).itemsize)
    except TypeError:
        return 1.0


def _elements(shape: Sequence[int]) -> int:
    return int(np.prod(shape)) if len(shape) else 1


@dataclass(frozen=True)
class OpStats:
    """What one op of one invoke does, independent of the device."""

    index: int
    op: str
    dtype: str  # the dtype it computes in (int8, int4 weights, float32, ...)
    macs: int
    elementwise: int  # other arithmetic: adds, activations, pooling, requantization
    param_bytes: int  # constants first read by this op (weights, biases)
    act_in_bytes: int  # non-constant inputs read
    act_out_bytes: int  # outputs written
    out_shape: tuple[int, ...] = ()

    @property
    def ops(self) -> int:
        return 2 * self.macs + self.elementwise

    @property
    def bytes_moved(self) -> int:
        return self.param_bytes + self.act_in_bytes + self.act_out_bytes

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ops": self.ops}


@dataclass(frozen=True)
class TensorLife:
    """A buffer the plan must place: alive from op ``first`` to op ``last`` (TFLite Micro's scopes)."""

    tensor: int
    name: str
    bytes: int
    first: int
    last: int


@dataclass(frozen=True)
class MemoryPlan:
    """Offsets of every activation buffer in one arena."""

    lives: tuple[TensorLife, ...]
    offsets: dict[int, int]  # tensor index -> byte offset
    peak_bytes: int  # extent of the plan: what the arena's activation part needs
    lower_bound_bytes: int  # the most bytes alive at one moment (no plan does better)
    naive_bytes: int  # every tensor in its own buffer

    def to_dict(self) -> dict[str, Any]:
        return {
            "peak_bytes": self.peak_bytes,
            "lower_bound_bytes": self.lower_bound_bytes,
            "naive_bytes": self.naive_bytes,
            "buffers": len(self.lives),
        }


def _round_up(n: int, align: int = ALIGN) -> int:
    return (n + align - 1) // align * align


def greedy_plan(lives: Sequence[TensorLife], align: int = ALIGN) -> MemoryPlan:
    """TFLite Micro's greedy placement: buffers sorted by size, largest first (equal sizes: the one added
    last goes first, as its reverse-filled stable sort does), each at the lowest offset whose gap fits it
    among the placed buffers alive at the same time."""
    sized = [TensorLife(t.tensor, t.name, _round_up(t.bytes, align), t.first, t.last) for t in lives]
    order = sorted(range(len(sized)), key=lambda i: (-sized[i].bytes, -i))
    placed: list[tuple[int, int, TensorLife]] = []  # (offset, end, life), kept sorted by offset
    offsets: dict[int, int] = {}
    for i in order:
        want = sized[i]
        candidate = 0
        for off, end, other in placed:
            if other.first > want.last or want.first > other.last:
                continue  # not alive at the same time
            if off - candidate >= want.bytes:
                break  # the gap before this buffer is big enough
            candidate = max(candidate, end)
        offsets[want.tensor] = candidate
        placed.append((candidate, candidate + want.bytes, want))
        placed.sort(key=lambda p: p[0])
    peak = max((end for _, end, _ in placed), default=0)
    steps = range(min((t.first for t in sized), default=0), max((t.last for t in sized), default=-1) + 1)
    lower = max((sum(t.bytes for t in sized if t.first <= s <= t.last) for s in steps), default=0)
    return MemoryPlan(tuple(sized), offsets, peak, lower, sum(t.bytes for t in sized))


def lifetimes(
    n_ops: int,
    op_inputs: Sequence[Iterable[int]],
    op_outputs: Sequence[Iterable[int]],
    graph_inputs: Iterable[int],
    graph_outputs: Iterable[int],
) -> dict[int, tuple[int, int]]:
    """First and last scope of every tensor, as TFLite Micro's AllocationInfoBuilder marks them: scope 0
    is the start of the invoke (graph inputs), op ``i`` is scope ``i + 1``; graph outputs live to the end."""
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for t in graph_inputs:
        first[t] = last[t] = 0
    outs = list(graph_outputs)
    for t in outs:
        first.setdefault(t, 0)
        last.setdefault(t, 0)
    for i in range(n_ops):
        scope = i + 1
        for t in op_outputs[i]:
            first[t] = last[t] = scope
        for t in op_inputs[i]:
            if t in first:
                last[t] = scope
        for t in op_outputs[i]:
            last[t] = scope
    for t in outs:
        last[t] = n_ops
    return {t: (first[t], last[t]) for t in first}


@dataclass
class GraphProfile:
    """One artifact walked op by op, with its memory plan."""

    name: str
    format: str  # "tflite" or "onnx"
    ops: list[OpStats]
    param_bytes: int
    input_bytes: int
    output_bytes: int
    plan: MemoryPlan
    tensors: int  # tensors in the graph (TFLite Micro keeps one record per tensor)
    inputs: int
    outputs: int
    size_bytes: int
    notes: list[str] = field(default_factory=list)

    @property
    def macs(self) -> int:
        return sum(o.macs for o in self.ops)

    @property
    def total_ops(self) -> int:
        return sum(o.ops for o in self.ops)

    @property
    def activation_bytes(self) -> int:
        return sum(o.act_in_bytes + o.act_out_bytes for o in self.ops)

    @property
    def io_bytes(self) -> int:
        return self.input_bytes + self.output_bytes

    @property
    def dtype(self) -> str:
        """The dtype of the bulk of the arithmetic."""
        by: dict[str, int] = {}
        for o in self.ops:
            by[o.dtype] = by.get(o.dtype, 0) + o.ops
        return max(by, key=lambda k: by[k]) if by else "int8"

    def op_names(self) -> list[str]:
        return [o.op for o in self.ops]

    def cost(self) -> ArtifactCost:
        """The whole artifact as ``estimate.ArtifactCost`` (what the runtime's estimates take)."""
        return ArtifactCost(
            self.name,
            self.macs,
            sum(o.elementwise for o in self.ops),
            self.param_bytes,
            self.activation_bytes,
            self.io_bytes,
            dtype=self.dtype,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "format": self.format,
            "macs": self.macs,
            "ops": self.total_ops,
            "param_bytes": self.param_bytes,
            "activation_bytes": self.activation_bytes,
            "io_bytes": self.io_bytes,
            "dtype": self.dtype,
            "size_bytes": self.size_bytes,
            "memory_plan": self.plan.to_dict(),
            "per_op": [o.to_dict() for o in self.ops],
            "notes": list(self.notes),
        }


# ------------------------------------------------------------------------------------------ TFLite


def _tflite_macs(op: str, out_elems: int, in_shapes: list[tuple[int, ...]], w: tuple[int, ...]) -> int:
    if op == "CONV_2D" and len(w) == 4:
        return out_elems * w[1] * w[2] * w[3]  # OHWI: each output sums H x W x I products
    if op == "DEPTHWISE_CONV_2D" and len(w) == 4:
        return out_elems * w[1] * w[2]  # 1HWC: one H x W window per output channel
    if op == "FULLY_CONNECTED" and len(w) == 2:
        return out_elems * w[1]
    if op == "TRANSPOSE_CONV" and len(w) == 4 and len(in_shapes) > 2:
        return _elements(in_shapes[2]) * w[0] * w[1] * w[2]
    if op == "BATCH_MATMUL" and in_shapes and in_shapes[0]:
        return out_elems * in_shapes[0][-1]
    return 0


def _weight_shape(op: str, ins: Sequence[int], tensors: Sequence[Any]) -> tuple[int, ...]:
    if len(ins) > 1 and ins[1] >= 0 and op in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
        return tuple(tensors[ins[1]].shape)
    if op == "TRANSPOSE_CONV" and len(ins) > 1 and ins[1] >= 0:
        return tuple(tensors[ins[1]].shape)
    return ()


def profile_tflite(data: bytes, name: str = "model", bits: int | None = None) -> GraphProfile:
    """Walk the first subgraph of a TFLite flatbuffer. ``bits=4``: the weights are 4-bit (unpacked by the
    runtime), so the MAC ops compute as int4 on profiles that have a rate for it."""
    from kasmina_edge.core.tflite_graph import read_graph

    try:
        graph = read_graph(bytes(data))
    except Exception as exc:  # a flatbuffer that does not parse raises anything from struct to IndexError
        raise GraphError(f"{name}: not a readable TFLite flatbuffer ({type(exc).__name__})") from None
    tensors = graph.tensors

    def nbytes(i: int) -> int:
        t = tensors[i]
        return int(np.ceil(_elements(t.shape) * dtype_bytes(t.dtype)))

    seen_buffers: set[int] = set()
    stats: list[OpStats] = []
    for op in graph.ops:
        ins = [i for i in op.inputs if i >= 0]
        outs = [o for o in op.outputs if o >= 0]
        in_shapes = [tuple(tensors[i].shape) for i in op.inputs if i >= 0]
        out_elems = sum(_elements(tensors[o].shape) for o in outs)
        w = _weight_shape(op.name, op.inputs, tensors)
        macs = _tflite_macs(op.name, out_elems, in_shapes, w)
        variable = [i for i in ins if not tensors[i].is_constant]
        if macs:
            elem = out_elems  # bias add + requantization per output
        elif op.name in _DATA_MOVEMENT:
            elem = 0
        elif op.name in _REDUCTIONS:
            elem = sum(_elements(tensors[i].shape) for i in variable[:1])
        else:
            elem = out_elems * _PER_ELEMENT_COST.get(op.name, 1)
        params = 0
        for i in ins:
            t = tensors[i]
            if t.is_constant and t.buffer not in seen_buffers:
                seen_buffers.add(t.buffer)
                params += t.constant_bytes
        data_dtype = tensors[variable[0]].dtype if variable else (tensors[outs[0]].dtype if outs else "int8")
        weight_dtype = tensors[op.inputs[1]].dtype if w and len(op.inputs) > 1 else ""
        dtype = "int4" if macs and (weight_dtype == "int4" or bits == 4) else data_dtype
        stats.append(
            OpStats(
                index=op.index,
                op=op.name,
                dtype=dtype,
                macs=int(macs),
                elementwise=int(elem),
                param_bytes=int(params),
                act_in_bytes=sum(nbytes(i) for i in variable),
                act_out_bytes=sum(nbytes(o) for o in outs),
                out_shape=tuple(tensors[outs[0]].shape) if outs else (),
            )
        )
    spans = lifetimes(
        len(graph.ops),
        [[i for i in op.inputs if i >= 0] for op in graph.ops],
        [[o for o in op.outputs if o >= 0] for op in graph.ops],
        graph.inputs,
        graph.outputs,
    )
    lives = [
        TensorLife(t, tensors[t].name, nbytes(t), a, b)
        for t, (a, b) in sorted(spans.items())
        if not tensors[t].is_constant and nbytes(t) > 0
    ]
    notes = [f"{graph.subgraphs} subgraphs: only the first is profiled"] if graph.subgraphs > 1 else []
    return GraphProfile(
        name=name,
        format="tflite",
        ops=stats,
        param_bytes=graph.parameter_bytes(),
        input_bytes=sum(nbytes(i) for i in graph.inputs),
        output_bytes=sum(nbytes(o) for o in graph.outputs),
        plan=greedy_plan(lives),
        tensors=len(tensors),
        inputs=len(graph.inputs),
        outputs=len(graph.outputs),
        size_bytes=len(data),
        notes=notes,
    )


# ------------------------------------------------------------------------------------------ ONNX

_ONNX_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 5: "int16", 6: "int32", 7: "int64", 10: "float16", 11: "float64",
                9: "bool", 22: "int4", 21: "uint4"}  # fmt: skip
_QDQ = frozenset({"QuantizeLinear", "DequantizeLinear"})
_SHAPE_ONLY = frozenset({"Shape", "Constant", "ConstantOfShape", "Size"})


def _onnx_macs(node: Any, out_elems: int, shapes: dict[str, tuple[int, ...]], weight: Any) -> int:
    op = node.op_type
    if op == "Conv" and weight is not None:
        return out_elems * int(np.prod(weight.shape[1:]))  # (M, C/group, k...) per output element
    if op == "ConvTranspose" and weight is not None and node.input[0] in shapes:
        return _elements(shapes[node.input[0]]) * int(np.prod(weight.shape[1:]))
    if op == "Gemm" and weight is not None:
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return out_elems * int(weight.shape[1] if trans_b else weight.shape[0])
    if op == "MatMul":
        a = shapes.get(node.input[0])
        if a:
            return out_elems * int(a[-1])
    return 0


class _OnnxIndex:
    """An ONNX graph's tensors: shapes, dtypes, constants, who makes and who reads each, seen through QDQ."""

    def __init__(self, g: Any, numpy_helper: Any) -> None:
        self._np = numpy_helper
        self.inits = {i.name: i for i in g.initializer}
        self._arrays: dict[str, np.ndarray] = {}
        self.constants: dict[str, np.ndarray] = {}
        for node in g.node:
            if node.op_type == "Constant" and node.output:
                for a in node.attribute:
                    if a.name == "value":
                        self.constants[node.output[0]] = numpy_helper.to_array(a.t)
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.dtypes: dict[str, str] = {}
        for v in [*g.input, *g.value_info, *g.output]:
            tt = v.type.tensor_type
            self.shapes[v.name] = tuple(d.dim_value if d.dim_value > 0 else 1 for d in tt.shape.dim)
            self.dtypes[v.name] = _ONNX_DTYPES.get(tt.elem_type, "float32")
        for n_, init in self.inits.items():
            self.shapes[n_] = tuple(int(d) for d in init.dims)
            self.dtypes[n_] = _ONNX_DTYPES.get(init.data_type, "float32")
        self.producer = {o: n for n in g.node for o in n.output}
        self.consumers: dict[str, list[Any]] = {}
        for n in g.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)

    def array(self, n: str) -> np.ndarray:
        if n not in self._arrays:
            self._arrays[n] = self._np.to_array(self.inits[n])
        return self._arrays[n]

    def is_const(self, t: str) -> bool:
        return t in self.inits or t in self.constants

    def storage(self, t: str) -> str:
        """The tensor that really holds ``t`` once QDQ is fused: a DQ output is its int8 input."""
        seen = 0
        while t in self.producer and self.producer[t].op_type == "DequantizeLinear" and seen < 4:
            t = self.producer[t].input[0]
            seen += 1
        return t

    def stored_output(self, t: str) -> str:
        users = self.consumers.get(t, [])
        if len(users) == 1 and users[0].op_type == "QuantizeLinear":
            return str(users[0].output[0])
        return t

    def nbytes(self, t: str) -> int:
        if t in self.inits:
            return int(np.ceil(_elements(self.shapes[t]) * dtype_bytes(self.dtypes[t])))
        return int(np.ceil(_elements(self.shapes.get(t, (1,))) * dtype_bytes(self.dtypes.get(t, "float32"))))

    def const_root(self, t: str) -> str | None:
        """The initializer behind a weight input (through DQ, Clip and friends of a QCDQ chain)."""
        for _ in range(6):
            if t in self.inits:
                return t
            n = self.producer.get(t)
            if n is None or n.op_type not in ("DequantizeLinear", "QuantizeLinear", "Clip", "Cast", "Identity"):
                return None
            t = n.input[0]
        return None


def _onnx_op(k: int, node: Any, ix: _OnnxIndex, seen_params: set[str], bits: int | None
             ) -> tuple[OpStats, list[str], list[str]]:
    """One (QDQ-folded) node's statistics, its variable inputs and its stored outputs."""
    shapes, dtypes = ix.shapes, ix.dtypes
    out_elems = sum(_elements(shapes.get(o, (1,))) for o in node.output if o)
    w_name = ix.const_root(node.input[1]) if len(node.input) > 1 and node.input[1] else None
    weight = ix.array(w_name) if w_name is not None else None
    macs = _onnx_macs(node, out_elems, shapes, weight)
    ins = [ix.storage(i) for i in node.input if i]
    variable = [i for i in ins if not ix.is_const(i) and ix.const_root(i) is None]
    outs = [ix.stored_output(o) for o in node.output if o]
    params = 0
    for i in node.input:
        root = ix.const_root(i) if i else None
        if root is not None and root not in seen_params:
            seen_params.add(root)
            params += ix.nbytes(root)
    if macs:
        elem = out_elems
    elif node.op_type in _DATA_MOVEMENT:
        elem = 0
    elif node.op_type in _REDUCTIONS:
        elem = sum(_elements(shapes.get(i, (1,))) for i in variable[:1])
    else:
        elem = out_elems * _PER_ELEMENT_COST.get(node.op_type, 1)
    data_dtype = dtypes.get(variable[0], "float32") if variable else "float32"
    if macs and weight is not None and weight.dtype in (np.int8, np.uint8) and data_dtype in ("int8", "uint8"):
        dtype = "int4" if bits == 4 else "int8"
    elif macs and bits == 4:
        dtype = "int4"  # QCDQ 4-bit weights stored as clipped floats: int8 kernels after fusion
    else:
        dtype = data_dtype
    stats = OpStats(
        index=k, op=node.op_type, dtype=dtype, macs=int(macs), elementwise=int(elem), param_bytes=int(params),
        act_in_bytes=sum(ix.nbytes(i) for i in variable), act_out_bytes=sum(ix.nbytes(o) for o in outs),
        out_shape=shapes.get(node.output[0], ()) if node.output else (),
    )
    return stats, variable, outs


def profile_onnx(data: bytes, name: str = "model", bits: int | None = None) -> GraphProfile:
    """Walk an ONNX graph in node order (needs ``onnx``, a host extra); QDQ pairs are folded."""
    from kasmina_edge.contracts.optional import require

    onnx = require("onnx", "profiling ONNX graphs op by op")
    from onnx import numpy_helper, shape_inference

    try:
        model = onnx.load_from_string(bytes(data))
        model = shape_inference.infer_shapes(model)
    except Exception as exc:  # DecodeError, ValidationError, ...: all mean "not an ONNX graph we can read"
        raise GraphError(f"{name}: not a readable ONNX model ({type(exc).__name__})") from None
    g = model.graph
    ix = _OnnxIndex(g, numpy_helper)
    real = [n for n in g.node if n.op_type not in _QDQ and n.op_type not in _SHAPE_ONLY]
    seen_params: set[str] = set()
    stats: list[OpStats] = []
    op_inputs: list[list[str]] = []
    op_outputs: list[list[str]] = []
    for k, node in enumerate(real):
        op, variable, outs = _onnx_op(k, node, ix, seen_params, bits)
        stats.append(op)
        op_inputs.append(variable)
        op_outputs.append(outs)
    graph_in = [ix.storage(ix.stored_output(i.name)) for i in g.input if i.name not in ix.inits]
    graph_out = [ix.storage(o.name) for o in g.output]
    index = {
        t: k for k, t in enumerate(dict.fromkeys([*graph_in, *sum(op_inputs, []), *sum(op_outputs, [])]))
    }
    spans = lifetimes(
        len(real),
        [[index[t] for t in ins] for ins in op_inputs],
        [[index[t] for t in outs] for outs in op_outputs],
        [index[t] for t in graph_in if t in index],
        [index[t] for t in graph_out if t in index],
    )
    names = {k: t for t, k in index.items()}
    lives = [
        TensorLife(k, names[k], ix.nbytes(names[k]), a, b)
        for k, (a, b) in sorted(spans.items())
        if ix.nbytes(names[k])
    ]
    notes = (
        ["QDQ pairs folded into the ops they quantize (as ONNX Runtime fuses them)"]
        if any(n.op_type in _QDQ for n in g.node)
        else []
    )
    return GraphProfile(
        name=name,
        format="onnx",
        ops=stats,
        param_bytes=sum(ix.nbytes(n_) for n_ in ix.inits),
        input_bytes=sum(ix.nbytes(i.name) for i in g.input if i.name not in ix.inits),
        output_bytes=sum(ix.nbytes(o.name) for o in g.output),
        plan=greedy_plan(lives),
        tensors=len(index) + len(ix.inits),
        inputs=len(graph_in),
        outputs=len(graph_out),
        size_bytes=len(data),
        notes=notes,
    )


def sniff_format(data: bytes) -> str:
    """'tflite' for a flatbuffer with the TFL3 identifier, 'onnx' otherwise if it parses as protobuf."""
    if len(data) >= 8 and data[4:8] == b"TFL3":
        return "tflite"
    return "onnx"


def profile_graph(data: bytes, fmt: str, name: str = "model", bits: int | None = None) -> GraphProfile:
    """Dispatch on an artifact format (``tflite-int8``, ``onnx-qdq``, ``onnx-qcdq``, or a bare 'tflite'/'onnx')."""
    if fmt.startswith("tflite"):
        return profile_tflite(data, name, bits)
    if fmt.startswith("onnx"):
        return profile_onnx(data, name, bits)
    raise GraphError(f"{name}: no graph walk for format {fmt!r} (tflite-int8, onnx-qdq, onnx-qcdq)")
