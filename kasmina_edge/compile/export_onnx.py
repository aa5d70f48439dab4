"""ONNX exports for the Linux targets: QDQ int8 through onnxruntime, QAT kernels as Brevitas QCDQ.

* int8 PTQ: the BatchNorm-folded module is exported with the TorchScript exporter (``dynamo=False``,
  opset 13, one self-contained file, batch axis dynamic), pre-processed, then ``quantize_static`` in
  QDQ format (int8 weights per channel, int8 activations per tensor). The graph's input and output
  tensors get the site grid through ``TensorQuantOverrides``.
* QAT kernels (8 or 4 bit): Brevitas ``export_onnx_qcdq`` (TorchScript path, opset 13). Brevitas stores
  the low-bit weights as float32 behind Quantize→Clip→Dequantize; :func:`fold_weight_quantization`
  stores them as the integers they are (int8 initializers feeding DequantizeLinear), numerically the
  same graph, 4× smaller, and the form ``pack4`` packs two per byte.

A QDQ model keeps float inputs and outputs; chaining hands the dequantized float on, and because both
sides of a cut share one grid, the next QuantizeLinear recovers the very same integers.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kasmina_edge.compile.quantize import QuantGrid, fold_batchnorm
from kasmina_edge.contracts.optional import require
from kasmina_edge.core.build_errors import BuildError, CutMismatchError

if TYPE_CHECKING:
    import torch
    from torch import nn

OPSET = 13


def export_float_onnx(
    module: nn.Module, example_args: Sequence[torch.Tensor], input_names: Sequence[str], path: Path
) -> None:
    """TorchScript-path ONNX export (opset 13) with a dynamic batch axis, weights inside the file."""
    import warnings

    import torch

    axes = {name: {0: "batch"} for name in [*input_names, "output"]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(),
            tuple(example_args),
            str(path),
            input_names=list(input_names),
            output_names=["output"],
            opset_version=OPSET,
            dynamic_axes=axes,
            dynamo=False,
        )


class _Reader:
    """onnxruntime's CalibrationDataReader over batched torch tensors."""

    def __init__(self, names: Sequence[str], batches: Iterable[Sequence[torch.Tensor]]) -> None:
        self._it: Iterator[dict[str, np.ndarray]] = (
            {n: t.detach().numpy().astype(np.float32) for n, t in zip(names, b, strict=True)} for b in batches
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


@contextmanager
def _root_logger_quiet() -> Iterator[None]:
    """ONNX Runtime's quantizer gives advice on the root logger ("Bias of Gemm node ... is not constant"): noise
    in a build's output. KASMINA_VERBOSE=1 shows it."""
    root = logging.getLogger()
    level = root.level
    if not os.environ.get("KASMINA_VERBOSE"):
        root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def export_int8_onnx(
    module: nn.Module,
    example_args: Sequence[torch.Tensor],
    calibration: Iterable[Sequence[torch.Tensor]],
    *,
    artifact: str,
    input_names: Sequence[str],
    input_grids: dict[int, QuantGrid] | None = None,
    output_grid: QuantGrid | None = None,
    reduce_range: bool = False,
) -> bytes:
    """Fold BatchNorm, export, pre-process and ``quantize_static`` (QDQ int8); check the cut grids.

    ``reduce_range`` keeps weights within 7 bits: ONNX Runtime's fused int8 kernels on x86-64 CPUs
    without VNNI add pairs of u8×s8 products in int16 and saturate with full-range weights (measured
    here: 15 LSB off on a folded first conv); 7-bit weights cannot overflow.
    """
    require("onnx", "ONNX export")
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    input_grids = input_grids or {}
    folded = fold_batchnorm(module)
    with tempfile.TemporaryDirectory(prefix="kasmina-onnx-") as tmp:
        fp32, pre, q8 = Path(tmp, "fp32.onnx"), Path(tmp, "pre.onnx"), Path(tmp, "int8.onnx")
        try:
            export_float_onnx(folded, example_args, input_names, fp32)
            with _root_logger_quiet():
                quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
            overrides: dict[str, list[dict[str, Any]]] = {}
            for pos, grid in input_grids.items():
                for name in _grid_sharing_chain_forward(pre.read_bytes(), input_names[pos]):
                    overrides[name] = [_override(grid)]
            if output_grid is not None:
                for name in _grid_sharing_chain(pre.read_bytes(), "output"):
                    overrides[name] = [_override(output_grid)]
            with _root_logger_quiet():
                quantize_static(
                    str(pre),
                    str(q8),
                    _Reader(input_names, calibration),
                    quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8,
                    per_channel=True,
                    reduce_range=reduce_range,
                    calibrate_method=CalibrationMethod.MinMax,
                    # keep ReLUs: ORT would drop one whose output grid it assumes starts at 0, which a
                    # symmetric cut grid does not
                    extra_options={
                        "TensorQuantOverrides": overrides,
                        "WeightSymmetric": True,
                        "QDQKeepRemovableActivations": True,
                    },
                )
        except Exception as exc:
            raise BuildError(f"{artifact}: ONNX int8 export failed: {exc}") from exc
        data = q8.read_bytes()
    check_onnx_cut_grids(data, artifact, input_names, input_grids, output_grid)
    return data


# ops whose int8 output shares its input's grid in ORT's QDQ quantizer (``QDQDirect8BitOp`` and friends)
_GRID_SHARING_OPS = frozenset(
    {"AveragePool", "MaxPool", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Slice"}
)


def _grid_sharing_chain(data: bytes, output: str) -> list[str]:
    """The output tensor and every tensor upstream of it that must share its grid (back through
    pooling, reshapes, ReLU), so an override at the output is not overruled by a shared grid."""
    onnx = require("onnx", "ONNX export")
    graph = onnx.load_from_string(data).graph
    producers = {o: n for n in graph.node for o in n.output}
    names = [output]
    node = producers.get(output)
    while node is not None and node.op_type in _GRID_SHARING_OPS:
        names.append(node.input[0])
        node = producers.get(node.input[0])
    return names


def _grid_sharing_chain_forward(data: bytes, graph_input: str) -> list[str]:
    """The input tensor and the layout-only ops' outputs after it (the quantizer puts the first
    QuantizeLinear after an Unsqueeze/Reshape that starts a graph)."""
    onnx = require("onnx", "ONNX export")
    graph = onnx.load_from_string(data).graph
    names = [graph_input]
    while True:
        users = [n for n in graph.node if names[-1] in n.input]
        if len(users) != 1 or users[0].op_type not in _GRID_SHARING_OPS:
            return names
        names.append(users[0].output[0])


def _override(grid: QuantGrid) -> dict[str, Any]:
    return {"scale": np.array(grid.scale, np.float32), "zero_point": np.array(grid.zero_point, np.int8)}


# ------------------------------------------------------------------ reading grids back


def _initializer_values(model: Any) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    return {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}


def onnx_io_grids(data: bytes) -> tuple[dict[str, QuantGrid], QuantGrid | None]:
    """The grid of the QuantizeLinear right after each graph input, and of the DequantizeLinear
    that produces the graph output (None where the model has none there)."""
    onnx = require("onnx", "ONNX inspection")
    model = onnx.load_from_string(data)
    values = _initializer_values(model)

    def grid(node: Any) -> QuantGrid:
        scale = values[node.input[1]]
        zp = values[node.input[2]] if len(node.input) > 2 and node.input[2] else np.zeros(1, np.int8)
        if np.asarray(scale).size != 1:
            raise ValueError(f"{node.name}: per-channel grid at the model edge")
        return QuantGrid(float(np.asarray(scale).reshape(-1)[0]), int(np.asarray(zp).reshape(-1)[0]))

    inputs: dict[str, QuantGrid] = {}
    for graph_input in model.graph.input:
        tensor = graph_input.name
        for _ in range(8):  # through layout-only ops to the first QuantizeLinear
            users = [n for n in model.graph.node if tensor in n.input]
            q = next((n for n in users if n.op_type == "QuantizeLinear"), None)
            if q is not None:
                inputs[graph_input.name] = grid(q)
                break
            if len(users) != 1 or users[0].op_type not in _GRID_SHARING_OPS:
                break
            tensor = users[0].output[0]
    out_name = model.graph.output[0].name
    producer = next((n for n in model.graph.node if out_name in n.output), None)
    output = grid(producer) if producer is not None and producer.op_type == "DequantizeLinear" else None
    return inputs, output


def check_onnx_cut_grids(
    data: bytes,
    artifact: str,
    input_names: Sequence[str],
    input_grids: dict[int, QuantGrid],
    output_grid: QuantGrid | None,
) -> None:
    ins, out = onnx_io_grids(data)
    for pos, want in input_grids.items():
        got = ins.get(input_names[pos])
        if got != want:
            raise CutMismatchError(
                f"{artifact} input {input_names[pos]}: grid at the cut is {got}, expected {want}"
            )
    if output_grid is not None and out != output_grid:
        raise CutMismatchError(f"{artifact} output: grid at the cut is {out}, expected {output_grid}")


def onnx_op_counts(data: bytes) -> dict[str, int]:
    onnx = require("onnx", "ONNX inspection")
    counts: dict[str, int] = {}
    for node in onnx.load_from_string(data).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def onnx_opset(data: bytes) -> int:
    onnx = require("onnx", "ONNX inspection")
    model = onnx.load_from_string(data)
    return max(int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx"))


# ------------------------------------------------------------------ Brevitas QCDQ


def export_qcdq_onnx(
    brevitas_module: nn.Module,
    example: torch.Tensor,
    *,
    artifact: str,
    site_grid: QuantGrid,
    input_name: str,
) -> bytes:
    """A QAT kernel as QCDQ ONNX (TorchScript path, opset 13), weights stored as integers; its input
    and output Q/DQ pairs are the site grid (checked)."""
    import warnings

    require("brevitas", "QCDQ export")
    from brevitas.export import export_onnx_qcdq

    wrapped = brevitas_module  # quantize.to_brevitas put the site grid at its input and its output
    with tempfile.TemporaryDirectory(prefix="kasmina-qcdq-") as tmp:
        path = Path(tmp, "kernel.onnx")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                export_onnx_qcdq(
                    wrapped.eval(),
                    args=example[:1],
                    export_path=str(path),
                    input_names=[input_name],
                    output_names=["output"],
                    opset_version=OPSET,
                    dynamo=False,
                    dynamic_axes={input_name: {0: "batch"}, "output": {0: "batch"}},
                )
        except Exception as exc:
            raise BuildError(f"{artifact}: Brevitas QCDQ export failed: {exc}") from exc
        data = path.read_bytes()
    data = fold_weight_quantization(data)
    check_onnx_cut_grids(data, artifact, [input_name], {0: site_grid}, site_grid)
    return data


def fold_weight_quantization(data: bytes) -> bytes:
    """Rewrite ``W(float) → QuantizeLinear → [Clip] → DequantizeLinear`` (and ``W(int8) → Clip →
    DequantizeLinear``) as ``W(int8) → DequantizeLinear``.

    The integers are computed the way QuantizeLinear would (round half to even, saturate, then the
    Clip bounds), so the graph computes exactly what it did; only the storage changes.
    """
    onnx = require("onnx", "ONNX rewriting")
    from onnx import numpy_helper

    model = onnx.load_from_string(data)
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    values = {name: numpy_helper.to_array(i) for name, i in inits.items()}
    consts = _constant_values(g)
    values.update(consts)
    consumers: dict[str, list[Any]] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    remove: list[Any] = []
    for q in list(g.node):
        if q.op_type != "QuantizeLinear" or q.input[0] not in inits:
            continue
        w = values[q.input[0]].astype(np.float32)
        scale = values[q.input[1]].astype(np.float32)
        zp = values[q.input[2]] if len(q.input) > 2 and q.input[2] else np.zeros((), np.int8)
        axis = next((a.i for a in q.attribute if a.name == "axis"), 1)
        shape = [1] * w.ndim
        if scale.size > 1:
            shape[axis] = -1
        ints = np.rint(w / scale.reshape(shape)) + zp.astype(np.int32).reshape(shape if zp.size > 1 else [])
        ints = np.clip(ints, -128, 127)
        nxt = consumers.get(q.output[0], [])
        tail = q
        if len(nxt) == 1 and nxt[0].op_type == "Clip":
            clip = nxt[0]
            lo = values.get(clip.input[1]) if len(clip.input) > 1 and clip.input[1] else None
            hi = values.get(clip.input[2]) if len(clip.input) > 2 and clip.input[2] else None
            ints = np.clip(ints, lo if lo is not None else -128, hi if hi is not None else 127)
            remove.append(clip)
            tail = clip
        deqs = consumers.get(tail.output[0], [])
        if not deqs or any(d.op_type != "DequantizeLinear" for d in deqs):
            continue
        name = q.input[0] + "_int"
        g.initializer.append(numpy_helper.from_array(ints.astype(np.int8), name))
        for d in deqs:
            d.input[0] = name
        remove.append(q)
    # the TorchScript exporter may already have folded QuantizeLinear into an integer constant:
    # ``W(int8) → Clip → DequantizeLinear`` then only needs the Clip applied to the stored values
    for clip in list(g.node):
        if clip.op_type != "Clip" or clip in remove or clip.input[0] not in inits:
            continue
        w = values[clip.input[0]]
        deqs = consumers.get(clip.output[0], [])
        if w.dtype != np.int8 or not deqs or any(d.op_type != "DequantizeLinear" for d in deqs):
            continue
        lo = values.get(clip.input[1]) if len(clip.input) > 1 and clip.input[1] else None
        hi = values.get(clip.input[2]) if len(clip.input) > 2 and clip.input[2] else None
        clipped = np.clip(w, lo if lo is not None else -128, hi if hi is not None else 127).astype(np.int8)
        name = clip.input[0] + "_int"
        g.initializer.append(numpy_helper.from_array(clipped, name))
        for d in deqs:
            d.input[0] = name
        remove.append(clip)
    for n in remove:
        g.node.remove(n)
    used = {i for n in g.node for i in n.input}
    for init in list(g.initializer):
        if init.name not in used:
            g.initializer.remove(init)
    for n in [n for n in g.node if n.op_type == "Constant" and n.output[0] not in used]:
        g.node.remove(n)
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def _constant_values(graph: Any) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    out: dict[str, np.ndarray] = {}
    for n in graph.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    out[n.output[0]] = numpy_helper.to_array(a.t)
    return out


# ------------------------------------------------------------------ running


def onnx_session(data: bytes, *, fused: bool = True) -> Any:
    """An ONNX Runtime CPU session. ``fused=False`` stops at basic graph optimizations, so QDQ runs as
    written (dequantize, float op, quantize): the reference semantics, free of x86 int8 saturation."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if not fused:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])


def run_onnx(
    data: bytes, inputs: Sequence[np.ndarray], batch: int = 512, *, fused: bool = True
) -> np.ndarray:
    """Run a single-output ONNX model over batched float inputs."""
    sess = onnx_session(data, fused=fused)
    names = [i.name for i in sess.get_inputs()]
    n = inputs[0].shape[0]
    outs = [
        sess.run(
            None,
            {
                nm: np.ascontiguousarray(x[i : i + batch], np.float32)
                for nm, x in zip(names, inputs, strict=True)
            },
        )[0]
        for i in range(0, n, batch)
    ]
    return np.concatenate(outs, axis=0)
