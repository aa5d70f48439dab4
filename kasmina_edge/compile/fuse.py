"""The fused base: the base segments stitched into one model (artifact ``base_whole``, kind "whole").

The device runs it instead of the segment chain while no site holds a kernel (one invoke instead of one per
segment). It is made from the segments as exported, not exported again: each cut joins a segment's output
tensor to the next segment's first op, on the grid both already share (the build checked every cut), so the
fused model computes, op for op and bit for bit, what the chain computes. A fresh export of the whole torch
model would calibrate its own interior grids and give other int8 logits.

* TFLite: the flatbuffers merged with the schema's object API (``ai_edge_litert.schema_py_generated``):
  one subgraph, the segments' operators in order, tensors and buffers renumbered, operator codes shared.
* ONNX (QDQ): ``onnx.compose.merge_models`` at each cut (a DequantizeLinear then a QuantizeLinear on the
  same grid: the identity on those values).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kasmina_edge.core.build_errors import BuildError

WHOLE_BASE = "base_whole"  # the name the runtime looks for (kasmina_edge.runtime.image.WHOLE_BASE)
WHOLE_INPUTS = ["window", "rr"]
# fused pieces around a live site (kasmina_edge.runtime.image.PREFIX_NAME / SUFFIX_NAME): with one site holding
# a kernel the device runs prefix, kernel, suffix (3 invokes) instead of every segment and the kernel
PREFIX_NAME = "base_to_site{}"
SUFFIX_NAME = "base_from_site{}"


class FuseError(BuildError):
    """The segments cannot be stitched into one model (an unexpected graph layout)."""


def piece_ranges(n_segments: int) -> list[tuple[str, int, int]]:
    """(artifact name, first segment, last segment) of every fused piece of a chain of ``n_segments``: per site
    the segments before it (prefix) and after it (suffix), where that is more than one segment (a single
    segment is its own piece)."""
    out = []
    for site in range(n_segments - 1):
        if site >= 1:
            out.append((PREFIX_NAME.format(site), 0, site))
        if n_segments - 1 - (site + 1) >= 1:
            out.append((SUFFIX_NAME.format(site), site + 1, n_segments - 1))
    return out


def fuse_pieces(segments: Sequence[bytes], input_names: Sequence[Sequence[str]] | None = None) -> dict[str, bytes]:
    """Every fused piece (:func:`piece_ranges`) of a chain, TFLite (``input_names`` None) or ONNX."""
    out = {}
    for name, lo, hi in piece_ranges(len(segments)):
        part = segments[lo : hi + 1]
        out[name] = fuse_tflite(part) if input_names is None else fuse_onnx(part, input_names[lo : hi + 1])
    return out


def fuse_tflite(segments: Sequence[bytes], *, simplify: bool = True) -> bytes:
    """One TFLite model running ``segments`` in order; its inputs: the first segment's input, then the last
    segment's other inputs (RR); its output: the last segment's output. ``simplify``: drop the layout round
    trips at the cuts (:func:`_drop_layout_round_trips`)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    models = [schema.ModelT.InitFromPackedBuf(data, 0) for data in segments]
    for i, m in enumerate(models):
        if len(m.subgraphs) != 1 or any(b.offset > 1 for b in m.buffers):
            raise FuseError(f"segment {i}: {len(m.subgraphs)} subgraphs or external buffers: cannot fuse")
    out = schema.ModelT()
    out.version = models[0].version
    out.description = b"kasmina-edge fused base (segments stitched at their cuts)"
    out.buffers = [schema.BufferT()]  # buffer 0: the empty sentinel every model starts with
    out.operatorCodes = []
    graph = schema.SubGraphT()
    graph.name = b"main"
    graph.tensors, graph.operators = [], []
    handed: int | None = None  # the fused model's tensor holding the previous segment's output
    for i, m in enumerate(models):
        handed = _append_segment(out, graph, m, i, handed, last=i == len(models) - 1)
    out.subgraphs = [graph]
    if simplify and _drop_layout_round_trips(schema, out, graph):
        _compact_tensors(graph)
    out.metadata = _merged_metadata(out, models)
    out.signatureDefs = [_signature(schema, graph)]
    builder = flatbuffers.Builder(1024)
    builder.Finish(out.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _append_segment(out: Any, graph: Any, m: Any, i: int, handed: int | None, *, last: bool) -> int:
    """Copy segment ``m``'s ops, tensors and buffers into ``out``; its first input is ``handed`` (the output of
    the segment before). Returns the fused index of its output tensor."""
    sub = m.subgraphs[0]
    ins, outs = [int(t) for t in sub.inputs], [int(t) for t in sub.outputs]
    if len(outs) != 1 or (handed is not None and not ins):
        raise FuseError(f"segment {i}: {len(ins)} inputs, {len(outs)} outputs: cannot fuse")
    buf_map = {0: 0}
    for b_idx, buf in enumerate(m.buffers):
        if b_idx:
            buf_map[b_idx] = len(out.buffers)
            out.buffers.append(buf)
    code_map = {c_idx: _code_index(out, code) for c_idx, code in enumerate(m.operatorCodes)}
    t_map: dict[int, int] = {}
    for t_idx, t in enumerate(sub.tensors):
        if handed is not None and t_idx == ins[0]:
            t_map[t_idx] = handed  # the cut: the previous output, on the grid this input shares
            continue
        t.buffer = buf_map[int(t.buffer)]
        t.name = f"s{i}/".encode() + (t.name or b"")
        t_map[t_idx] = len(graph.tensors)
        graph.tensors.append(t)
    for op in sub.operators:
        op.opcodeIndex = code_map[int(op.opcodeIndex)]
        op.inputs = [t_map[int(t)] if int(t) >= 0 else -1 for t in op.inputs]
        op.outputs = [t_map[int(t)] for t in op.outputs]
        if op.intermediates is not None and len(op.intermediates):
            op.intermediates = [t_map[int(t)] for t in op.intermediates]
        graph.operators.append(op)
    if handed is None:
        graph.inputs = [t_map[ins[0]]]
    if last:
        graph.inputs = [*graph.inputs, *(t_map[t] for t in ins[1:])]
        graph.outputs = [t_map[outs[0]]]
    elif len(ins) > 1 and handed is not None:
        raise FuseError(f"segment {i}: a middle segment with {len(ins)} inputs: cannot fuse")
    return t_map[outs[0]]


def _drop_layout_round_trips(schema: Any, out: Any, graph: Any) -> int:
    """Drop TRANSPOSE→RESHAPE→RESHAPE→TRANSPOSE runs that give back their input: at a cut a segment ends by
    turning its NHWC activations into the site's N×C×L layout and the next one begins by turning them back.
    Only where the reshapes undo each other, the permutations compose to the identity, the grids are equal
    and nothing else reads the tensors in between: the data then flows on unchanged. Returns runs dropped."""
    ops, tensors = graph.operators, graph.tensors
    transpose, reshape = schema.BuiltinOperator.TRANSPOSE, schema.BuiltinOperator.RESHAPE
    pattern = [transpose, reshape, reshape, transpose]
    readers: dict[int, int] = {}
    for op in ops:
        for t in op.inputs:
            readers[int(t)] = readers.get(int(t), 0) + 1
    kept_io = {int(t) for t in [*graph.inputs, *graph.outputs]}
    drop: set[int] = set()
    replace: dict[int, int] = {}
    i = 0
    while i + 4 <= len(ops):
        run = ops[i : i + 4]
        if [_builtin(out, op) for op in run] != pattern or not _chained(run):
            i += 1
            continue
        mids = [int(op.outputs[0]) for op in run[:3]]
        src, dst = int(run[0].inputs[0]), int(run[3].outputs[0])
        p1, p2 = (
            _constant(out, tensors[int(run[0].inputs[1])]),
            _constant(out, tensors[int(run[3].inputs[1])]),
        )
        undone = (
            p1 is not None and p2 is not None and len(p1) == len(p2)
            and [int(p1[j]) for j in p2] == list(range(len(p1)))
            and list(tensors[mids[0]].shape) == list(tensors[int(run[2].outputs[0])].shape)
            and list(tensors[src].shape) == list(tensors[dst].shape)
            and _same_grid(tensors[src], tensors[dst])
        )  # fmt: skip
        if not undone or dst in kept_io or any(readers.get(t, 0) != 1 or t in kept_io for t in mids):
            i += 1
            continue
        drop.update(range(i, i + 4))
        replace[dst] = src
        i += 4
    graph.operators = [op for k, op in enumerate(ops) if k not in drop]
    for op in graph.operators:
        op.inputs = [replace.get(int(t), int(t)) for t in op.inputs]
    return len(replace)


def _builtin(out: Any, op: Any) -> int:
    code = out.operatorCodes[int(op.opcodeIndex)]
    return max(int(code.builtinCode), int(code.deprecatedBuiltinCode))


def _chained(run: Sequence[Any]) -> bool:
    """Each op of ``run`` has one output, read by the next op as its first input."""
    return all(
        len(a.outputs) == 1 and int(a.outputs[0]) == int(b.inputs[0])
        for a, b in zip(run, run[1:], strict=False)
    )


def _constant(out: Any, t: Any) -> Any:
    """The int32/int64 values of a constant tensor (a permutation), or None."""
    import numpy as np

    data = out.buffers[int(t.buffer)].data
    if data is None or len(data) == 0:
        return None
    dtype = {2: "<i4", 4: "<i8"}.get(int(t.type))  # TensorType INT32, INT64
    return None if dtype is None else np.frombuffer(np.asarray(data, dtype=np.uint8).tobytes(), dtype=dtype)


def _same_grid(a: Any, b: Any) -> bool:
    if int(a.type) != int(b.type):
        return False
    qa, qb = a.quantization, b.quantization

    def grid(q: Any) -> tuple[list[float], list[int]]:
        if q is None:
            return [], []
        return [float(v) for v in (q.scale if q.scale is not None else [])], [
            int(v) for v in (q.zeroPoint if q.zeroPoint is not None else [])
        ]

    return grid(qa) == grid(qb)


def _compact_tensors(graph: Any) -> None:
    """Renumber the tensors, keeping those an op, an input or an output still refers to."""
    used = {int(t) for t in [*graph.inputs, *graph.outputs]}
    for op in graph.operators:
        used.update(int(t) for t in [*op.inputs, *op.outputs] if int(t) >= 0)
    order = sorted(used)
    new = {old: k for k, old in enumerate(order)}
    graph.tensors = [graph.tensors[k] for k in order]
    for op in graph.operators:
        op.inputs = [new[int(t)] if int(t) >= 0 else -1 for t in op.inputs]
        op.outputs = [new[int(t)] for t in op.outputs]
        if op.intermediates is not None and len(op.intermediates):
            op.intermediates = [new[int(t)] for t in op.intermediates]
    graph.inputs = [new[int(t)] for t in graph.inputs]
    graph.outputs = [new[int(t)] for t in graph.outputs]


def _code_index(out: Any, code: Any) -> int:
    key = (code.builtinCode, code.deprecatedBuiltinCode, code.customCode, code.version)
    for idx, have in enumerate(out.operatorCodes):
        if (have.builtinCode, have.deprecatedBuiltinCode, have.customCode, have.version) == key:
            return idx
    out.operatorCodes.append(code)
    return len(out.operatorCodes) - 1


def _version(data: Any) -> tuple[int, ...]:
    import numpy as np

    raw = b"" if data is None else np.asarray(data, dtype=np.uint8).tobytes()
    text = raw.split(b"\0")[0].decode(errors="replace")
    return tuple(int(p) for p in text.split(".") if p.isdigit())


def _merged_metadata(out: Any, models: Sequence[Any]) -> list[Any]:
    """The segments' metadata, one entry per name: ``min_runtime_version`` the highest of them, others the
    first segment's. Their buffers were copied with the segments; entries point at the copies."""
    picked: dict[bytes, tuple[Any, Any]] = {}
    for m in models:
        for md in m.metadata or []:
            data = m.buffers[md.buffer].data
            have = picked.get(md.name)
            if have is None or (md.name == b"min_runtime_version" and _version(data) > _version(have[1])):
                picked[md.name] = (md, data)
    from ai_edge_litert import schema_py_generated as schema

    entries = []
    for name, (_, data) in picked.items():
        buf = schema.BufferT()
        buf.data = data
        out.buffers.append(buf)
        md = schema.MetadataT()
        md.name, md.buffer = name, len(out.buffers) - 1
        entries.append(md)
    return entries


def _signature(schema: Any, graph: Any) -> Any:
    def tensor_map(name: str, index: int) -> Any:
        tm = schema.TensorMapT()
        tm.name, tm.tensorIndex = name.encode(), int(index)
        return tm

    sig = schema.SignatureDefT()
    sig.signatureKey = b"serving_default"
    sig.subgraphIndex = 0
    sig.inputs = [tensor_map(f"args_{k}", t) for k, t in enumerate(graph.inputs)]
    sig.outputs = [tensor_map("output_0", graph.outputs[0])]
    return sig


def fuse_onnx(segments: Sequence[bytes], input_names: Sequence[Sequence[str]]) -> bytes:
    """One ONNX model running ``segments`` in order (``input_names``: each segment's graph input names, as
    exported); inputs ``window`` (and ``rr``), output the last segment's."""
    import onnx
    from onnx import compose

    models = [onnx.load_from_string(data) for data in segments]
    opsets = {(o.domain, o.version) for m in models for o in m.opset_import}
    merged = compose.add_prefix(models[0], prefix="s0/", rename_inputs=False)
    for i, m in enumerate(models[1:], start=1):
        if len(merged.graph.output) != 1:
            raise FuseError(f"segment {i - 1}: {len(merged.graph.output)} outputs: cannot fuse")
        nxt = compose.add_prefix(m, prefix=f"s{i}/", rename_inputs=False)
        cut = input_names[i][0]
        if cut not in {v.name for v in nxt.graph.input}:
            raise FuseError(f"segment {i}: no graph input named {cut!r}: cannot fuse")
        merged = compose.merge_models(merged, nxt, io_map=[(merged.graph.output[0].name, cut)])
    if len({v for d, v in opsets if d in ("", "ai.onnx")}) > 1:
        raise FuseError(f"segments use different ONNX opsets {sorted(opsets)}: cannot fuse")
    onnx.checker.check_model(merged)
    return bytes(merged.SerializeToString())
