"""Split at seed sites, PT2E int8 TFLite export with grids forced at every cut, chained execution."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kasmina_edge.compile.chain import ChainLayout, tflite_chain, torch_chain
from kasmina_edge.compile.export_tflite import check_cut_grids
from kasmina_edge.compile.quantize import QuantGrid, count_batchnorm, fold_batchnorm
from kasmina_edge.compile.split import ArtifactIO, assert_cuts_match
from kasmina_edge.core.build_errors import CutMismatchError
from kasmina_edge.core.tflite_graph import constant_array, open_interpreter, read_graph


def _io(data: bytes) -> ArtifactIO:
    g = read_graph(data)
    i, o = g.input_tensors()[0], g.output_tensors()[0]
    return ArtifactIO(QuantGrid(i.scales[0], i.zero_points[0]), QuantGrid(o.scales[0], o.zero_points[0]))


def test_quant_grid_symmetric_covers_range() -> None:
    g = QuantGrid.from_range(-0.5, 2.0)
    assert g.zero_point == 0
    assert g.quantize(np.array([2.0]))[0] == 127
    assert g.quantize(np.array([-0.5]))[0] == round(-0.5 / g.scale)
    x = np.linspace(-0.5, 2.0, 101).astype(np.float32)
    assert np.abs(g.dequantize(g.quantize(x)) - x).max() <= g.scale / 2 + 1e-7


def test_fold_batchnorm_is_exact_and_removes_bn(trained) -> None:  # type: ignore[no-untyped-def]
    seg = trained.segmented.segments[1]
    assert count_batchnorm(seg) > 0
    folded = fold_batchnorm(seg)
    assert count_batchnorm(folded) == 0
    x = trained.segmented.trace(trained.x_cal[:32], trained.rr_cal[:32])[1]
    with torch.no_grad():
        assert torch.allclose(seg(x), folded(x), atol=1e-5)


def test_every_artifact_is_full_int8_without_batchnorm_ops(tflite_artifacts) -> None:  # type: ignore[no-untyped-def]
    for name, data in tflite_artifacts.items():
        g = read_graph(data)
        assert {t.dtype for t in g.input_tensors() + g.output_tensors()} == {"int8"}, name
        assert not [t for t in g.tensors if t.dtype.startswith("float")], name
        if name.startswith("segment_") and name != "segment_4":
            # a folded BatchNorm leaves no MUL/ADD behind (litert-torch would not fold it)
            assert "MUL" not in g.op_names() and "ADD" not in g.op_names(), (name, g.op_names())
        weights = [t for t in g.tensors if t.is_constant and t.dtype == "int8"]
        assert weights and all(t.per_channel or t.shape[0] == 1 for t in weights), name


def test_grids_match_across_every_cut(trained, tflite_artifacts) -> None:  # type: ignore[no-untyped-def]
    io = {name: _io(data) for name, data in tflite_artifacts.items()}
    # 4 sites: segment out/next segment in, plus kernel in/out at sites 1 and 3
    assert assert_cuts_match(trained.specs, io) == 4 + 2 * 2
    for spec in trained.specs:
        check_cut_grids(
            read_graph(tflite_artifacts[spec.name]), spec.name, spec.input_grids, spec.output_grid
        )


def test_cut_mismatch_is_reported_with_the_site(trained, tflite_artifacts) -> None:  # type: ignore[no-untyped-def]
    io = {name: _io(data) for name, data in tflite_artifacts.items()}
    good = io["segment_2"]
    assert good.input_grid is not None
    io["segment_2"] = ArtifactIO(QuantGrid(good.input_grid.scale * 1.001, 0), good.output_grid)
    with pytest.raises(CutMismatchError, match="site 1"):
        assert_cuts_match(trained.specs, io)
    spec = next(s for s in trained.specs if s.name == "segment_2")
    wrong = {0: QuantGrid(spec.input_grids[0].scale * 2, 0)}
    with pytest.raises(CutMismatchError, match="segment_2 input"):
        check_cut_grids(read_graph(tflite_artifacts["segment_2"]), "segment_2", wrong, None)


@pytest.mark.parametrize("config", ["base", "morphed"])
def test_int8_chain_agrees_with_torch(trained, tflite_artifacts, config) -> None:  # type: ignore[no-untyped-def]
    sm = trained.segmented
    segments = tuple(f"segment_{i}" for i in range(5))
    active_ids = sm.default_active() if config == "morphed" else {}
    names = {s.seed_id: s.name for s in trained.specs if s.kind == "kernel"}
    layout = ChainLayout(segments, {site: names[sid] for site, sid in active_ids.items()})
    ref = torch_chain(sm, trained.x_test, trained.rr_test, active_ids)
    got = tflite_chain(tflite_artifacts, layout, trained.x_test, trained.rr_test)
    assert (ref.argmax(1) == trained.y_test).mean() > 0.6  # the stand-in learned the toy task (chance: 0.2)
    assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.99
    assert np.percentile(np.abs(got - ref).max(axis=1), 99) < 0.1 * (ref.max() - ref.min())


def test_chaining_int8_tensors_equals_feeding_each_artifact_its_traced_input(
    trained, tflite_artifacts
) -> None:  # type: ignore[no-untyped-def]
    """Handing raw int8 across a cut is exact: re-running an artifact on the traced int8 input of the
    previous one reproduces the chain's int8 output bit for bit."""
    segments = tuple(f"segment_{i}" for i in range(5))
    layout = ChainLayout(segments, {1: "kernel_s1_seedA"})
    trace: dict[str, list[list[np.ndarray]]] = {}
    out = tflite_chain(
        tflite_artifacts, layout, trained.x_test[:20], trained.rr_test[:20], return_int8=True, trace=trace
    )
    kernel_out = np.concatenate([c[-1] for c in trace["kernel_s1_seedA"]])
    seg2_in = np.concatenate([c[0] for c in trace["segment_2"]])
    assert np.array_equal(kernel_out, seg2_in)
    assert out.dtype == np.int8


def test_graph_reader_matches_the_interpreter(tflite_artifacts) -> None:  # type: ignore[no-untyped-def]
    data = tflite_artifacts["kernel_s3_seedB"]
    g = read_graph(data)
    interp = open_interpreter(data)
    assert [op["op_name"] for op in interp._get_ops_details()] == g.op_names()
    weight = next(t for t in g.tensors if t.is_constant and t.dtype == "int8" and len(t.shape) == 4)
    assert np.array_equal(constant_array(data, weight), interp.get_tensor(weight.index))
    assert g.parameter_bytes() > 0
