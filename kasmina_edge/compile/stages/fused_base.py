"""Stage 9b, the fused base: the base segments stitched into one artifact (``base_whole``, kind "whole",
:mod:`kasmina_edge.compile.fuse`), which the device runs while no site holds a kernel.

It joins the bundle only when it reproduces the base chain on the first evaluation windows (TFLite: the int8
logits bit for bit; ONNX: within one step of the logit grid) and, later, when it keeps the target's rules
(:func:`keep_target_rules`: the Edge TPU's op mapping and parameter cache, the profile's flash and SRAM).
Where it is left out the manifest's ``fused_base`` says why, and the device runs the chain as before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from kasmina_edge.compile.fuse import WHOLE_BASE, WHOLE_INPUTS, FuseError, fuse_onnx, fuse_tflite
from kasmina_edge.core.build_errors import ProfileLimitError
from kasmina_edge.core.formats import TFLITE_FORMATS

if TYPE_CHECKING:
    from kasmina_edge.compile.quantize import QuantGrid
    from kasmina_edge.compile.report import BuildReport
    from kasmina_edge.compile.split import SegmentedModel
    from kasmina_edge.compile.stages.export import ArtifactSet
    from kasmina_edge.compile.stages.windows import EvalSet

CHECK_WINDOWS = 512  # evaluation windows the fused base must reproduce the chain on


def add_fused_base(
    report: BuildReport,
    arts: ArtifactSet,
    segments: tuple[str, ...],
    model: SegmentedModel,
    ev: EvalSet,
    logit_grid: QuantGrid,
) -> None:
    """Stitch the segments into ``base_whole`` and add it to ``arts`` when it reproduces the chain."""
    import torch

    from kasmina_edge.compile.split import ArtifactSpec
    from kasmina_edge.compile.stages.export import BuiltArtifact

    seg = [arts.built[n] for n in segments]
    fmt = seg[0].fmt
    try:
        if fmt in TFLITE_FORMATS:
            data = fuse_tflite([b.data for b in seg])
        else:
            data = fuse_onnx([b.data for b in seg], [b.spec.input_names for b in seg])
    except FuseError as exc:
        _record(report, False, f"the segments could not be fused: {exc}")
        return
    windows, worst = _chain_difference(arts, segments, data, ev, logit_grid)
    if worst > (0.0 if fmt in TFLITE_FORMATS else 1.0):
        _record(
            report,
            False,
            f"the fused segments differ from the chain by {worst:g} logit LSB on {windows} windows",
        )
        return
    spec = ArtifactSpec(
        name=WHOLE_BASE, kind="whole", module=torch.nn.ModuleList(model.segments), input_names=list(WHOLE_INPUTS),
        example_args=(), calibration=[], input_grids={}, output_grid=None,
    )  # fmt: skip
    arts.built[WHOLE_BASE] = BuiltArtifact(
        spec, data, fmt, f"{len(seg)} base segments fused at their cuts", 8
    )
    _record(
        report,
        True,
        f"{len(seg)} segments fused at their cuts; reproduces the base chain on {windows} "
        f"windows (max {worst:g} logit LSB); the device runs it while no site holds a kernel",
    )


def _record(report: BuildReport, included: bool, reason: str) -> None:
    report.fused_base = {"artifact": WHOLE_BASE, "included": included, "reason": reason}
    report.notes.append(f"fused base {WHOLE_BASE}: " + ("carried: " if included else "left out: ") + reason)


def _chain_difference(
    arts: ArtifactSet, segments: tuple[str, ...], whole: bytes, ev: EvalSet, logit_grid: QuantGrid
) -> tuple[int, float]:
    """(windows, the largest difference between the fused model's and the chain's logits in logit LSB)."""
    from kasmina_edge.compile.chain import ChainLayout, onnx_chain, tflite_chain

    n = min(CHECK_WINDOWS, ev.windows.shape[0])
    x, rr = ev.windows[:n], ev.rr[:n]
    layout = ChainLayout(segments, {})
    if arts.fmt in TFLITE_FORMATS:
        from kasmina_edge.core.tflite_graph import read_graph, run_batched

        data = arts.data()
        chain = tflite_chain(data, layout, x, rr, return_int8=True)
        g = read_graph(whole).input_tensors()
        xq, rq = (_quantize(t, a) for t, a in zip(g, (x, rr), strict=True))
        got = run_batched(whole, [xq, rq])[0].reshape(chain.shape)
        return n, float(np.abs(got.astype(np.int32) - chain.astype(np.int32)).max(initial=0))
    from kasmina_edge.compile.export_onnx import run_onnx

    chain_f = onnx_chain(arts.data(), layout, x, rr, fused=arts.fused)
    got_f = run_onnx(whole, [x.astype(np.float32), rr.astype(np.float32)], fused=arts.fused).reshape(
        chain_f.shape
    )
    return n, float(np.abs(got_f - chain_f).max(initial=0.0)) / logit_grid.scale


def _quantize(t: Any, values: np.ndarray) -> np.ndarray:
    from kasmina_edge.compile.quantize import QuantGrid

    return QuantGrid(t.scales[0], t.zero_points[0] if t.zero_points else 0).quantize(values)


def whole_inputs(
    trace: dict[str, list[list[np.ndarray]]], segments: tuple[str, ...], rows: int
) -> list[np.ndarray]:
    """The fused base's inputs on the first ``rows`` windows of a trace whose first calls ran the base chain:
    the first segment's window, the last segment's RR (the chain's own inputs, on the same grids). A call
    holds one row (TFLite) or a batch (ONNX)."""
    first, last = trace[segments[0]][:rows], trace[segments[-1]][:rows]
    return [np.concatenate([c[0] for c in first])[:rows], np.concatenate([c[1] for c in last])[:rows]]


def keep_target_rules(
    report: BuildReport, arts: ArtifactSet, check: Callable[[], dict[str, bytes]]
) -> dict[str, bytes]:
    """Run the target checks (``check``) with the fused base; where it alone breaks them (the profile's
    flash or SRAM, an op the Edge TPU would leave on the CPU, the parameter cache overflowing), leave it out,
    say why, and check again without it."""
    if WHOLE_BASE not in arts.built:
        return check()
    saved = (dict(report.memory), dict(report.target_mapping), list(report.notes), list(report.pending))
    try:
        files = check()
        reason = _edgetpu_breach(report)
    except ProfileLimitError as exc:
        reason = str(exc)
    if reason is None:
        return files
    report.memory, report.target_mapping, report.notes, report.pending = (
        saved[0],
        saved[1],
        saved[2],
        saved[3],
    )
    del arts.built[WHOLE_BASE]
    _drop_note(report)
    _record(report, False, f"it breaks the target's rules: {reason}")
    return check()


def _drop_note(report: BuildReport) -> None:
    report.notes = [n for n in report.notes if not n.startswith(f"fused base {WHOLE_BASE}: carried")]


def _edgetpu_breach(report: BuildReport) -> str | None:
    """Why the fused base may not go to the Edge TPU: an op of it left on the CPU, or the parameters no
    longer fitting the cache with it (None: it keeps the rules, or the target is not an Edge TPU)."""
    mapping = report.target_mapping
    models = mapping.get("models") or []
    fused = next((m for m in models if m.get("name") == WHOLE_BASE), None)
    if fused is None:
        return None
    if int(fused.get("ops_cpu") or 0) > 0:
        return f"Edge TPU: {fused['ops_cpu']} of its ops would run on the CPU"
    if not mapping.get("fits_cache", True):
        return "Edge TPU: with it the parameters no longer fit the on-chip cache"
    return None
