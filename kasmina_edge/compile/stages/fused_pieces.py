"""Stage 9c, the fused pieces: per site a kernel of the build sits at, the base segments before it
(``base_to_site{i}``) and after it (``base_from_site{i}``) stitched into one model each
(:func:`kasmina_edge.compile.fuse.fuse_pieces`), kind "whole". With that kernel live the device runs prefix,
kernel, suffix (3 invokes) instead of every segment and the kernel.

A piece joins only when it reproduces, bit for bit, the segments it stands for on the first evaluation
windows (TFLite formats; an ONNX chain keeps its segments). Only the sites the bundle's kernels sit at get
pieces: every site's would more than double a small bundle (bench_runtime section 2 prints both sizes).
The runtime checks each piece at boot against its segments on their own reference inputs
(:func:`kasmina_edge.runtime.image.piece_vectors`), so a piece needs no reference vectors of its own;
:func:`piece_inputs` gives them where a later stage wants them (the arena measurement, packaging).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from kasmina_edge.compile.fuse import FuseError, fuse_tflite, piece_ranges
from kasmina_edge.core.formats import TFLITE_FORMATS

if TYPE_CHECKING:
    from kasmina_edge.compile.report import BuildReport
    from kasmina_edge.compile.stages.export import ArtifactSet
    from kasmina_edge.compile.stages.windows import EvalSet

CHECK_WINDOWS = 256  # evaluation windows each piece must reproduce its segments on


def piece_span(name: str, n_segments: int) -> tuple[int, int] | None:
    """(first, last) segment of the fused piece called ``name`` in a chain of ``n_segments`` (None: not one)."""
    return next(((lo, hi) for n, lo, hi in piece_ranges(n_segments) if n == name), None)


def piece_inputs(
    trace: dict[str, list[list[np.ndarray]]], segments: tuple[str, ...], lo: int, hi: int, rows: int
) -> list[np.ndarray]:
    """A piece's inputs on the first ``rows`` windows of a trace whose first calls ran the base chain: what its
    first segment took, and the RR the last segment took when the piece ends at the logits."""
    first = np.concatenate([c[0] for c in trace[segments[lo]][:rows]])[:rows]
    if hi < len(segments) - 1:
        return [first]
    return [first, np.concatenate([c[1] for c in trace[segments[-1]][:rows]])[:rows]]


def add_fused_pieces(report: BuildReport, arts: ArtifactSet, segments: tuple[str, ...], ev: EvalSet) -> list[str]:
    """Fuse the pieces around the kernels' sites, keep those that reproduce their segments bit for bit, add
    them to ``arts``; returns their names (the reason for what was left out goes to the report)."""
    import torch

    from kasmina_edge.compile.chain import ChainLayout
    from kasmina_edge.compile.split import ArtifactSpec
    from kasmina_edge.compile.stages.export import BuiltArtifact
    from kasmina_edge.core.tflite_graph import run_batched

    sites = {b.spec.site for b in arts.built.values() if b.spec.kind == "kernel" and b.spec.site is not None}
    wanted = [(n, lo, hi) for n, lo, hi in piece_ranges(len(segments)) if int(n.rsplit("site", 1)[1]) in sites]
    if not wanted or arts.fmt not in TFLITE_FORMATS:
        why = "no kernel at a site with more than one segment around it" if not wanted else "an ONNX chain"
        _record(report, [], f"none: {why}")
        return []
    n = min(CHECK_WINDOWS, ev.windows.shape[0])
    trace: dict[str, list[list[np.ndarray]]] = {}
    arts.run(ChainLayout(segments, {}), ev.windows[:n], ev.rr[:n], trace)
    added, left = [], []
    for name, lo, hi in wanted:
        try:
            data = fuse_tflite([arts.built[s].data for s in segments[lo : hi + 1]])
        except FuseError as exc:
            left.append(f"{name}: {exc}")
            continue
        want = np.concatenate([c[-1] for c in trace[segments[hi]][:n]])
        got = run_batched(data, piece_inputs(trace, segments, lo, hi, n))[0].reshape(want.shape)
        worst = int(np.abs(got.astype(np.int32) - want.astype(np.int32)).max(initial=0))
        if worst:
            left.append(f"{name}: differs from segments {lo}..{hi} by {worst} LSB")
            continue
        # its inputs keep the names of what they are in the chain: the first segment's, and the RR of the last
        names = [*arts.built[segments[lo]].spec.input_names[:1],
                 *(arts.built[segments[hi]].spec.input_names[1:] if hi == len(segments) - 1 else [])]
        spec = ArtifactSpec(
            name=name, kind="whole", module=torch.nn.ModuleList(), input_names=names, example_args=(),
            calibration=[], input_grids={}, output_grid=None,
        )  # fmt: skip
        arts.built[name] = BuiltArtifact(spec, data, arts.built[segments[lo]].fmt,
                                         f"base segments {lo}..{hi} fused at their cuts", 8)
        added.append(name)
    _record(report, added, "; ".join(left) or f"each reproduces its segments bit for bit on {n} windows")
    return added


def _record(report: BuildReport, added: list[str], reason: str) -> None:
    report.fused_base["pieces"] = {"artifacts": added, "reason": reason}
    report.notes.append(f"fused pieces: {', '.join(added) or 'none'} ({reason})")
