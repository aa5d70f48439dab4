"""ONNX QDQ int8 chain, Brevitas QAT 4-bit kernels (TFLite and QCDQ ONNX), packing them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kasmina_edge.compile.chain import ChainLayout, onnx_chain, torch_chain
from kasmina_edge.compile.export_onnx import export_qcdq_onnx, onnx_io_grids, onnx_opset, run_onnx
from kasmina_edge.compile.export_tflite import export_int8_tflite
from kasmina_edge.compile.quantize import qat_kernel
from kasmina_edge.compile.split import ArtifactIO, assert_cuts_match
from kasmina_edge.core.pack4 import onnx_int4_ranges, pack_artifact, tflite_int4_ranges, unpack_file
from kasmina_edge.core.tflite_graph import constant_array, read_graph

SEGMENTS = tuple(f"segment_{i}" for i in range(5))


def test_onnx_qdq_cuts_match_and_chain_agrees(trained, onnx_artifacts) -> None:  # type: ignore[no-untyped-def]
    io = {}
    for spec in trained.specs:
        ins, out = onnx_io_grids(onnx_artifacts[spec.name])
        io[spec.name] = ArtifactIO(ins.get(spec.input_names[0]), out)
        assert onnx_opset(onnx_artifacts[spec.name]) == 13
    assert assert_cuts_match(trained.specs, io) == 8
    layout = ChainLayout(SEGMENTS, {1: "kernel_s1_seedA", 3: "kernel_s3_seedB"})
    ref = torch_chain(trained.segmented, trained.x_test, trained.rr_test, trained.segmented.default_active())
    for fused in (True, False):  # ORT's fused int8 kernels (7-bit weights) and the QDQ reference path
        got = onnx_chain(onnx_artifacts, layout, trained.x_test, trained.rr_test, fused=fused)
        assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.99


@pytest.fixture(scope="module")
def qat4(trained):  # type: ignore[no-untyped-def]
    spec = next(s for s in trained.specs if s.name == "kernel_s1_seedA")
    site_inputs = torch.cat([b[0] for b in spec.calibration])
    return (
        spec,
        site_inputs,
        qat_kernel(spec.module, site_inputs, bits=4, site_grid=spec.output_grid, steps=60),
    )


def test_qat_4bit_weights_lie_on_a_4_bit_grid(qat4) -> None:  # type: ignore[no-untyped-def]
    spec, site_inputs, q = qat4
    assert set(q.weight_ints) == {"down.weight", "up.weight"}
    for key, ints in q.weight_ints.items():
        assert ints.min() >= -7 and ints.max() <= 7
        w = dict(q.float_module.named_parameters())[key].detach()
        scale = q.weight_scales[key].reshape(-1, *([1] * (w.dim() - 1)))
        assert torch.allclose(w / scale, torch.from_numpy(ints).float(), atol=1e-4)
    with torch.no_grad():
        err = (q.float_module(site_inputs) - spec.module(site_inputs)).abs().mean()
        assert float(err) < 0.2 * float(spec.module(site_inputs).abs().mean())


def test_4bit_kernel_in_int8_tflite_packs_two_per_byte(qat4) -> None:  # type: ignore[no-untyped-def]
    spec, _, q = qat4
    data, _ = export_int8_tflite(
        q.float_module,
        spec.example_args,
        spec.calibration,
        artifact="k4",
        input_grids=spec.input_grids,
        output_grid=spec.output_grid,
        weight_scales=q.weight_scales,
    )
    g = read_graph(data)
    weights = [t for t in g.tensors if t.is_constant and t.dtype == "int8"]
    for t in weights:
        v = constant_array(data, t)
        assert v.min() >= -7 and v.max() <= 7, t.name
    ranges = tflite_int4_ranges(data)
    assert len(ranges) == len(weights) == 2
    blob, rep = pack_artifact(data, "tflite")
    assert unpack_file(blob) == data
    assert rep.weight_values == sum(n for _, n in ranges)
    assert rep.packed_bytes < rep.unpacked_bytes


def test_4bit_kernel_as_qcdq_onnx(qat4) -> None:  # type: ignore[no-untyped-def]
    import onnx

    spec, site_inputs, q = qat4
    data = export_qcdq_onnx(
        q.brevitas_module, site_inputs[:2], artifact="k4", site_grid=spec.output_grid, input_name="site1"
    )
    model = onnx.load_from_string(data)
    assert onnx_opset(data) == 13
    inits = {i.name: i for i in model.graph.initializer}
    # weights are stored as the integers they are, not as float32 behind Quantize→Clip
    assert not [n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] in inits]
    ins, out = onnx_io_grids(data)
    assert ins["site1"] == spec.output_grid and out == spec.output_grid
    y = run_onnx(data, [site_inputs[:64].numpy()], fused=False)
    with torch.no_grad():
        yb = q.brevitas_module(site_inputs[:64]).numpy()
    assert np.abs(y - yb).max() <= spec.output_grid.scale * 0.51 + 1e-6  # only the output rounding differs
    assert len(onnx_int4_ranges(data)) == 2
    blob, rep = pack_artifact(data, "onnx")
    assert unpack_file(blob) == data and rep.packed_bytes < rep.unpacked_bytes
