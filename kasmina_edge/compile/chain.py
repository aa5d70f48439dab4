"""Run a split model the way the device does: segment → [kernel] → segment → … → logits.

Three executors with one signature, used for parity at build time and for the accuracy figures:

* :func:`torch_chain` — the float reference (the segmented torch model);
* :func:`tflite_chain` — int8 TFLite artifacts in LiteRT, raw int8 tensors handed across cuts
  (which is exact because the grids match at every cut);
* :func:`onnx_chain` — QDQ/QCDQ ONNX artifacts in onnxruntime, the dequantized float handed on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from kasmina_edge.compile.quantize import QuantGrid
from kasmina_edge.core.tflite_graph import open_interpreter, read_graph, run_interpreter


@dataclass(frozen=True)
class ChainLayout:
    """Artifact names in chain order: ``segments[i]`` and, per site, the kernel name that is live."""

    segments: tuple[str, ...]
    active: Mapping[int, str]  # site -> artifact name of the live kernel

    def order(self) -> list[str]:
        names: list[str] = []
        for i, seg in enumerate(self.segments):
            names.append(seg)
            if i in self.active:
                names.append(self.active[i])
        return names


def _grid(t: Any) -> QuantGrid:
    return QuantGrid(t.scales[0], t.zero_points[0] if t.zero_points else 0)


def tflite_chain(
    artifacts: Mapping[str, bytes],
    layout: ChainLayout,
    x: np.ndarray,
    rr: np.ndarray,
    *,
    reference: bool = False,
    return_int8: bool = False,
    trace: dict[str, list[list[np.ndarray]]] | None = None,
) -> np.ndarray:
    """Float logits (or the raw int8 output) of the int8 TFLite chain for float windows and RR.

    ``trace``, when given, collects per artifact the int8 inputs and output of every row
    (``trace[name] = [[in0, (in1,) out], ...]``): the reference vectors a bundle carries."""
    names = layout.order()
    interps = {n: open_interpreter(artifacts[n], reference=reference) for n in names}
    first = read_graph(artifacts[layout.segments[0]]).input_tensors()[0]
    last_graph = read_graph(artifacts[layout.segments[-1]])
    rr_grid = _grid(last_graph.input_tensors()[1])
    out_grid = _grid(last_graph.output_tensors()[0])
    xq = _grid(first).quantize(x)
    rq = rr_grid.quantize(rr)
    rows: list[np.ndarray] = []
    for i in range(x.shape[0]):
        h = xq[i : i + 1]
        for n in names:
            args = [h, rq[i : i + 1]] if n == layout.segments[-1] else [h]
            h = run_interpreter(interps[n], args)[0]
            if trace is not None:
                trace.setdefault(n, []).append([*args, h])
        rows.append(h)
    out = np.concatenate(rows, axis=0) if rows else np.zeros((0, 0), np.int8)
    return out if return_int8 else out_grid.dequantize(out)


def onnx_chain(
    artifacts: Mapping[str, bytes],
    layout: ChainLayout,
    x: np.ndarray,
    rr: np.ndarray,
    *,
    fused: bool = True,
    trace: dict[str, list[list[np.ndarray]]] | None = None,
) -> np.ndarray:
    """Float logits of the ONNX chain (float handed across cuts, batched); ``trace`` as in tflite_chain."""
    from kasmina_edge.compile.export_onnx import run_onnx

    h = x.astype(np.float32)
    for n in layout.order():
        args = [h, rr.astype(np.float32)] if n == layout.segments[-1] else [h]
        h = run_onnx(artifacts[n], args, fused=fused)
        if trace is not None:
            trace.setdefault(n, []).append([*args, h])
    return h


def torch_chain(
    model: Any, x: np.ndarray, rr: np.ndarray, active: Mapping[int, str] | None = None, batch: int = 1024
) -> np.ndarray:
    """Float logits of the segmented torch model (``active``: site → kernel seed id)."""
    import torch

    outs = []
    for i in range(0, x.shape[0], batch):
        xt = torch.from_numpy(np.ascontiguousarray(x[i : i + batch], np.float32))
        rt = torch.from_numpy(np.ascontiguousarray(rr[i : i + batch], np.float32))
        outs.append(model.forward(xt, rt, active or {}).numpy())
    return np.concatenate(outs, axis=0) if outs else np.zeros((0, len(model.classes)), np.float32)
