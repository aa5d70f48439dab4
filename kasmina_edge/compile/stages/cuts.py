"""Stage 6, check the cuts: read each exported artifact's input and output grids back and assert they
are equal on both sides of every cut (int8 tensors then pass between artifacts without requantizing)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kasmina_edge.core.formats import TFLITE_FORMATS

if TYPE_CHECKING:
    from kasmina_edge.compile.quantize import QuantGrid
    from kasmina_edge.compile.split import ArtifactIO, ArtifactSpec
    from kasmina_edge.compile.stages.export import BuiltArtifact


def check_cuts(specs: list[ArtifactSpec], built: dict[str, BuiltArtifact]) -> int:
    """The number of cuts checked; a CutMismatchError names the first that differs."""
    from kasmina_edge.compile.split import assert_cuts_match

    return assert_cuts_match(specs, io_grids(built))


def io_grids(built: dict[str, BuiltArtifact]) -> dict[str, ArtifactIO]:
    """Each artifact's (first input, output) grid, as its file records them."""
    from kasmina_edge.compile.export_onnx import onnx_io_grids
    from kasmina_edge.compile.split import ArtifactIO

    io: dict[str, Any] = {}
    for name, b in built.items():
        if b.fmt in TFLITE_FORMATS:
            io[name] = ArtifactIO(_grid_of_tflite(b.data, "in"), _grid_of_tflite(b.data, "out"))
        else:
            ins, out = onnx_io_grids(b.data)
            io[name] = ArtifactIO(ins.get(b.spec.input_names[0]), out)
    return io


def _grid_of_tflite(data: bytes, side: str, pos: int = 0) -> QuantGrid:
    from kasmina_edge.compile.quantize import QuantGrid
    from kasmina_edge.core.tflite_graph import read_graph

    g = read_graph(data)
    t = g.input_tensors()[pos] if side == "in" else g.output_tensors()[0]
    return QuantGrid(t.scales[0], t.zero_points[0] if t.zero_points else 0)
