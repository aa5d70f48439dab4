"""The fused pieces of the base (``base_to_site{i}``: segments 0..i, ``base_from_site{i}``: segments i+1..N):
each computes, bit for bit, what the segments it stands for compute (TFLite, LiteRT's optimised and reference
kernels) or the same logits (ONNX); a single segment is its own piece, so none is made for it."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from kasmina_edge.compile.fuse import PREFIX_NAME, SUFFIX_NAME, fuse_pieces, piece_ranges
from kasmina_edge.core.tflite_graph import run_batched


def _segments(trained: Any) -> tuple[str, ...]:
    return tuple(s.name for s in trained.specs if s.kind == "segment")


def test_piece_ranges_cover_every_site_with_more_than_one_segment() -> None:
    assert piece_ranges(2) == []  # one site: segment 0 is its prefix, segment 1 its suffix
    assert piece_ranges(3) == [(SUFFIX_NAME.format(0), 1, 2), (PREFIX_NAME.format(1), 0, 1)]
    got = piece_ranges(5)
    assert [n for n, _, _ in got] == ["base_from_site0", "base_to_site1", "base_from_site1", "base_to_site2",
                                      "base_from_site2", "base_to_site3"]
    assert all(hi > lo for _, lo, hi in got)


def _run_segments(arts: dict[str, bytes], names: tuple[str, ...], h: np.ndarray, rr: np.ndarray | None,
                  reference: bool) -> np.ndarray:
    for i, name in enumerate(names):
        last = i == len(names) - 1 and rr is not None
        h = run_batched(arts[name], [h, rr] if last else [h], reference=reference)[0]
    return h


@pytest.mark.parametrize("reference", [False, True])
def test_every_tflite_piece_computes_its_segments_bit_for_bit(
    trained: Any, tflite_artifacts: dict[str, bytes], reference: bool
) -> None:
    from kasmina_edge.compile.quantize import QuantGrid
    from kasmina_edge.core.tflite_graph import read_graph

    segments = _segments(trained)
    pieces = fuse_pieces([tflite_artifacts[s] for s in segments])
    assert set(pieces) == {n for n, _, _ in piece_ranges(len(segments))} and pieces
    x, rr = trained.x_test[:64], trained.rr_test[:64]
    g0, last = read_graph(tflite_artifacts[segments[0]]), read_graph(tflite_artifacts[segments[-1]])
    t0, t_rr = g0.input_tensors()[0], last.input_tensors()[1]
    xq = QuantGrid(t0.scales[0], t0.zero_points[0]).quantize(x)
    rq = QuantGrid(t_rr.scales[0], t_rr.zero_points[0]).quantize(rr)
    # the tensor at every site, as the chain hands it on
    sites = [xq]
    for name in segments[:-1]:
        sites.append(run_batched(tflite_artifacts[name], [sites[-1]], reference=reference)[0])
    for name, lo, hi in piece_ranges(len(segments)):
        ends = hi == len(segments) - 1
        want = _run_segments(tflite_artifacts, segments[lo : hi + 1], sites[lo], rq if ends else None, reference)
        got = run_batched(pieces[name], [sites[lo], rq] if ends else [sites[lo]], reference=reference)[0]
        np.testing.assert_array_equal(got.reshape(want.shape), want, err_msg=name)
        assert len(read_graph(pieces[name]).ops) < sum(len(read_graph(tflite_artifacts[s]).ops)
                                                       for s in segments[lo : hi + 1])  # round trips dropped


def test_onnx_suffix_gives_the_chain_logits(trained: Any, onnx_artifacts: dict[str, bytes]) -> None:
    from kasmina_edge.compile.chain import ChainLayout, onnx_chain
    from kasmina_edge.compile.export_onnx import run_onnx

    segments = _segments(trained)
    names = [next(s.input_names for s in trained.specs if s.name == n) for n in segments]
    x, rr = trained.x_test[:100], trained.rr_test[:100]
    suffix = fuse_pieces([onnx_artifacts[s] for s in segments], names)[SUFFIX_NAME.format(0)]
    h = run_onnx(onnx_artifacts[segments[0]], [x])
    got = run_onnx(suffix, [h, rr])
    chain = onnx_chain(onnx_artifacts, ChainLayout(segments, {}), x, rr)
    np.testing.assert_allclose(got, chain, rtol=0, atol=1e-5)
    assert np.array_equal(got.argmax(1), chain.argmax(1))


def test_the_build_adds_the_pieces_around_its_kernels_sites(trained: Any, tflite_artifacts: dict[str, bytes]) -> None:
    from kasmina_edge.compile.report import BuildReport
    from kasmina_edge.compile.stages.export import ArtifactSet, BuiltArtifact
    from kasmina_edge.compile.stages.fused_pieces import add_fused_pieces, piece_inputs, piece_span
    from kasmina_edge.compile.stages.windows import EvalSet

    built = {s.name: BuiltArtifact(s, tflite_artifacts[s.name], "tflite-int8", "ptq", 8) for s in trained.specs}
    arts = ArtifactSet(built, "tflite-int8", fused=False)
    segments = _segments(trained)
    report = BuildReport(target="linux-arm", profile="p", bits=8, format="tflite-int8")
    ev = EvalSet("test", trained.x_test[:64], trained.rr_test[:64], trained.y_test[:64])
    added = add_fused_pieces(report, arts, segments, ev)
    sites = sorted({s.site for s in trained.specs if s.kind == "kernel" and s.site is not None})
    want = [n for n, _, _ in piece_ranges(len(segments)) if int(n.rsplit("site", 1)[1]) in sites]
    assert added == want and added  # only the kernels' sites, every piece that reproduces its segments
    assert all(arts.built[n].spec.kind == "whole" for n in added)
    for name in added:  # named as in the chain: the first segment's input, and the RR where it ends at the logits
        lo, hi = piece_span(name, len(segments)) or (0, 0)
        want_names = [built[segments[lo]].spec.input_names[0],
                      *(built[segments[-1]].spec.input_names[1:] if hi == len(segments) - 1 else [])]
        assert arts.built[name].spec.input_names == want_names
    assert report.fused_base["pieces"]["artifacts"] == added and "bit for bit" in report.fused_base["pieces"]["reason"]
    # the inputs a later stage hands a piece: its first segment's, and the RR where it ends at the logits
    trace: dict[str, list[list[np.ndarray]]] = {}
    from kasmina_edge.compile.chain import ChainLayout

    arts.run(ChainLayout(segments, {}), ev.windows[:8], ev.rr[:8], trace)
    for name in added:
        span = piece_span(name, len(segments))
        assert span is not None
        ins = piece_inputs(trace, segments, *span, 8)
        out = run_batched(arts.built[name].data, ins)[0]
        np.testing.assert_array_equal(out, np.concatenate([c[-1] for c in trace[segments[span[1]]][:8]]))
    assert piece_span("base_whole", len(segments)) is None
