"""Full-integer int8 TFLite through litert-torch (PT2E), int8 inputs and outputs, BatchNorm folded.

Every exported model is read back and its input/output grids are compared with the grids it was
asked for: a grid can be silently changed by the converter (a scale propagated from an ADD through a
TRANSPOSE), and a changed grid at a cut would break bit-exact chaining.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

from kasmina_edge.compile.quantize import PreparedInt8, QuantGrid, fold_batchnorm, prepare_int8
from kasmina_edge.contracts.optional import require
from kasmina_edge.core.build_errors import BuildError, CutMismatchError
from kasmina_edge.core.tflite_graph import TfliteGraph, read_graph

if TYPE_CHECKING:
    import torch
    from torch import nn


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[list[str]]:
    """Swallow the converter's C++ log lines on fd 2; keep them to explain a failure."""
    captured: list[str] = []
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.append(sink.read().decode(errors="replace"))


def convert_prepared(prepared: PreparedInt8, example_args: Sequence[torch.Tensor], artifact: str) -> bytes:
    """litert-torch conversion of a PT2E-quantized module into TFLite bytes (batch 1)."""
    litert_torch = require("litert_torch", "TFLite export")
    from litert_torch.quantize.quant_config import QuantConfig

    litert_torch.config.show_progress = False
    one = tuple(a[:1] for a in example_args)
    try:
        with _quiet_native_stderr() as log:
            model = litert_torch.convert(
                prepared.module, one, quant_config=QuantConfig(pt2e_quantizer=prepared.quantizer)
            )
            data = model.model_content()
    except Exception as exc:
        tail = (log[-1] if log else "")[-400:]
        raise BuildError(f"{artifact}: litert-torch conversion failed: {exc}. {tail}".strip()) from exc
    return bytes(data)


def check_cut_grids(
    graph: TfliteGraph,
    artifact: str,
    input_grids: dict[int, QuantGrid],
    output_grid: QuantGrid | None,
) -> None:
    """Raise unless every forced input/output grid is exactly the one stored in the model."""
    for pos, grid in input_grids.items():
        t = graph.input_tensors()[pos]
        _expect(t.dtype, t.scales, t.zero_points, grid, f"{artifact} input {pos} ({t.name})")
    if output_grid is not None:
        t = graph.output_tensors()[0]
        _expect(t.dtype, t.scales, t.zero_points, output_grid, f"{artifact} output ({t.name})")


def _expect(dtype: str, scales: tuple[float, ...], zps: tuple[int, ...], grid: QuantGrid, where: str) -> None:
    if dtype != "int8" or len(scales) != 1 or not grid.matches(scales[0], zps[0] if zps else 0):
        got = f"{dtype} scale={scales[0] if scales else None} zp={zps[0] if zps else None}"
        raise CutMismatchError(
            f"{where}: quantization at the cut is {got}, expected scale={grid.scale} zp={grid.zero_point}"
        )


def check_full_int8(graph: TfliteGraph, artifact: str) -> None:
    """Every activation int8 (int32 only for shape operands), inputs and outputs int8."""
    for t in graph.input_tensors() + graph.output_tensors():
        if t.dtype != "int8":
            raise BuildError(f"{artifact}: tensor {t.name!r} is {t.dtype}, a full-int8 model needs int8 I/O")
    floats = [t.name for t in graph.tensors if t.dtype.startswith("float")]
    if floats:
        raise BuildError(f"{artifact}: {len(floats)} float tensors remain (first: {floats[0]!r})")


def export_int8_tflite(
    module: nn.Module,
    example_args: Sequence[torch.Tensor],
    calibration: Iterable[Sequence[torch.Tensor]],
    *,
    artifact: str,
    input_grids: dict[int, QuantGrid] | None = None,
    output_grid: QuantGrid | None = None,
    weight_scales: dict[str, torch.Tensor] | None = None,
    residual_on_grid: bool = False,
) -> tuple[bytes, PreparedInt8]:
    """Fold BatchNorm, PT2E-quantize, convert; check full int8 and the cut grids. Returns the bytes and
    the quantized torch module (its fake-quant twin, useful as a reference)."""
    folded = fold_batchnorm(module)
    prepared = prepare_int8(
        folded,
        example_args,
        calibration,
        input_grids=input_grids,
        output_grid=output_grid,
        weight_scales=weight_scales,
        residual_on_grid=residual_on_grid,
    )
    data = convert_prepared(prepared, example_args, artifact)
    graph = read_graph(data)
    check_full_int8(graph, artifact)
    check_cut_grids(graph, artifact, input_grids or {}, output_grid)
    return data, prepared
