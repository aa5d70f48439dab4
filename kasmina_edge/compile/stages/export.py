"""Stage 5, export per format: each artifact spec as a quantized model file (litert-torch full-int8
TFLite, or ONNX QDQ/QCDQ), PTQ int8 or Brevitas QAT for the kernels, with the grids forced at its cuts."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from kasmina_edge.core.formats import TFLITE_FORMATS

if TYPE_CHECKING:
    from kasmina_edge.compile.chain import ChainLayout
    from kasmina_edge.compile.split import ArtifactSpec, SegmentedModel
    from kasmina_edge.compile.stages.request import BuildRequest


@dataclass
class BuiltArtifact:
    spec: ArtifactSpec
    data: bytes
    fmt: str  # tflite-int8 | onnx-qdq | onnx-qcdq
    quantization: str
    bits: int


@dataclass
class ArtifactSet:
    """The exported artifacts by name, run as the device chains them (LiteRT, or onnxruntime)."""

    built: dict[str, BuiltArtifact]
    fmt: str  # the target's format
    fused: bool  # onnxruntime's fused int8 kernels (x86)

    def data(self) -> dict[str, bytes]:
        return {n: b.data for n, b in self.built.items()}

    def run(
        self, layout: ChainLayout, x: np.ndarray, rr: np.ndarray, trace: dict[str, Any] | None = None
    ) -> np.ndarray:
        """Float logits of the chain in ``layout`` (``trace``: each artifact's inputs and output)."""
        from kasmina_edge.compile.chain import onnx_chain, tflite_chain

        if self.fmt in TFLITE_FORMATS:
            return tflite_chain(self.data(), layout, x, rr, trace=trace)
        return onnx_chain(self.data(), layout, x, rr, fused=self.fused, trace=trace)


def export_artifact(
    spec: ArtifactSpec, req: BuildRequest, target: str, fmt: str, model: SegmentedModel
) -> BuiltArtifact:
    """One artifact: a base bundle's own segment as it is, a 4-bit kernel by QAT, anything else by PTQ."""
    if spec.kind == "segment" and req.base_segments and spec.name in req.base_segments:
        data = req.base_segments[spec.name]  # the device's own segment, as the base bundle has it
        return BuiltArtifact(spec, data, fmt, "base bundle", 8)
    if spec.kind == "kernel" and req.bits == 4:
        data = export_qat(spec, fmt, 4, model, req.qat_steps)
        return BuiltArtifact(spec, data, fmt if fmt in TFLITE_FORMATS else "onnx-qcdq", "QAT w4a8", 4)
    reduce_range = target == "x86"
    data = _export_ptq(spec, fmt, reduce_range)
    return BuiltArtifact(spec, data, fmt, "PTQ w7a8" if reduce_range else "PTQ w8a8", 8)


def _export_ptq(
    spec: ArtifactSpec, fmt: str, reduce_range: bool, weight_scales: dict[str, Any] | None = None
) -> bytes:
    if fmt in TFLITE_FORMATS:
        from kasmina_edge.compile.export_tflite import export_int8_tflite

        data, _ = export_int8_tflite(
            spec.module,
            spec.example_args,
            spec.calibration,
            artifact=spec.name,
            input_grids=spec.input_grids,
            output_grid=spec.output_grid,
            weight_scales=weight_scales,
            residual_on_grid=spec.kind == "kernel",
        )
        return data
    from kasmina_edge.compile.export_onnx import export_int8_onnx

    return export_int8_onnx(
        spec.module,
        spec.example_args,
        spec.calibration,
        artifact=spec.name,
        input_names=spec.input_names,
        input_grids=spec.input_grids,
        output_grid=spec.output_grid,
        reduce_range=reduce_range,
    )


def export_qat(spec: ArtifactSpec, fmt: str, bits: int, model: SegmentedModel, steps: int) -> bytes:
    """Brevitas QAT of one kernel (teacher: the float kernel, plus the frozen rest of the network)."""
    import torch

    from kasmina_edge.compile.quantize import qat_kernel

    site_inputs = torch.cat([b[0] for b in spec.calibration])
    downstream = _downstream(model, spec.site or 0)
    assert spec.output_grid is not None
    q = qat_kernel(
        spec.module, site_inputs, bits=bits, site_grid=spec.output_grid, downstream=downstream, steps=steps
    )
    if fmt in TFLITE_FORMATS:
        qspec = replace(spec, module=q.float_module)
        return _export_ptq(qspec, fmt, False, weight_scales=q.weight_scales)
    from kasmina_edge.compile.export_onnx import export_qcdq_onnx

    return export_qcdq_onnx(
        q.brevitas_module,
        site_inputs[:2],
        artifact=spec.name,
        site_grid=spec.output_grid,
        input_name=spec.input_names[0],
    )


def _downstream(model: SegmentedModel, site: int) -> Any:
    """The float network after ``site`` with a fixed RR (zeros after normalisation do not matter for
    a distillation target: the teacher and the student see the same)."""
    import torch

    class Downstream(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rest = torch.nn.ModuleList(model.segments[site + 1 :])

        def forward(self, h: torch.Tensor) -> torch.Tensor:
            rr = torch.zeros(h.shape[0], model.rr_features)
            for i, seg in enumerate(self.rest):
                h = seg(h, rr) if i == len(self.rest) - 1 else seg(h)
            return h

    return Downstream().eval()


def artifact_ops(b: BuiltArtifact) -> dict[str, int]:
    """Op counts of an exported artifact (the report's op column)."""
    if b.fmt in TFLITE_FORMATS:
        from kasmina_edge.core.tflite_graph import read_graph

        return read_graph(b.data).op_counts()
    from kasmina_edge.compile.export_onnx import onnx_op_counts

    return onnx_op_counts(b.data)
