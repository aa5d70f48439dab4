"""Graph walk and memory plan: MACs per op, QDQ folding, TFLite Micro's greedy placement."""

from __future__ import annotations

import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kasmina_edge.contracts.errors import MissingExtraError
from kasmina_edge.profiler.graph import (
    ALIGN,
    GraphError,
    TensorLife,
    greedy_plan,
    lifetimes,
    profile_graph,
    profile_onnx,
    profile_tflite,
    sniff_format,
)


def test_lifetimes_follow_tflite_micro_scopes() -> None:
    # t0 -> op0 -> t1 -> op1 -> t2 (graph output); t0 is also read by op1
    spans = lifetimes(2, [[0], [1, 0]], [[1], [2]], graph_inputs=[0], graph_outputs=[2])
    assert spans[0] == (0, 2)  # created at the start, last read by op1 (scope 2)
    assert spans[1] == (1, 2)
    assert spans[2] == (2, 2)  # an output lives to the end of the invoke


def test_greedy_plan_breaks_ties_as_tflite_micro_does() -> None:
    # segment_0's shape: equal-size buffers placed last-added first fragment the arena to 3 x 256,
    # although at most 528 B are ever alive (what TFLite Micro itself reports for that model)
    lives = [
        TensorLife(0, "in", 256, 0, 1),
        TensorLife(1, "reshaped", 256, 1, 2),
        TensorLife(2, "padded", 262, 2, 3),
        TensorLife(3, "conv", 256, 3, 4),
        TensorLife(4, "transposed", 256, 4, 5),
        TensorLife(5, "out", 256, 5, 5),
    ]
    plan = greedy_plan(lives)
    assert plan.lower_bound_bytes == 528
    assert plan.peak_bytes == 768
    assert plan.naive_bytes == 5 * 256 + 272


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(1, 5000), st.integers(0, 12), st.integers(0, 6)),
        min_size=1,
        max_size=25,
    )
)
def test_greedy_plan_never_overlaps_live_buffers(spec: list[tuple[int, int, int]]) -> None:
    lives = [TensorLife(i, f"t{i}", size, first, first + span) for i, (size, first, span) in enumerate(spec)]
    plan = greedy_plan(lives)
    placed = plan.lives
    for a in placed:
        assert plan.offsets[a.tensor] % ALIGN == 0
        for b in placed:
            if a.tensor >= b.tensor or a.last < b.first or b.last < a.first:
                continue
            a0, b0 = plan.offsets[a.tensor], plan.offsets[b.tensor]
            assert a0 + a.bytes <= b0 or b0 + b.bytes <= a0, (a, b)
    assert plan.lower_bound_bytes <= plan.peak_bytes <= plan.naive_bytes


def test_tflite_walk_counts_macs_and_parameters(tflite_artifacts: dict[str, bytes]) -> None:
    from kasmina_edge.core.tflite_graph import read_graph

    seg0 = profile_tflite(tflite_artifacts["segment_0"], "segment_0")
    # Conv1d(1, 4, 7, stride 4) on 256 samples: 4 x 64 outputs x 7 taps, lowered to DEPTHWISE_CONV_2D
    conv = [o for o in seg0.ops if o.macs]
    assert [o.op for o in conv] == ["DEPTHWISE_CONV_2D"] and conv[0].macs == 4 * 64 * 7
    assert seg0.param_bytes == read_graph(tflite_artifacts["segment_0"]).parameter_bytes()
    assert sum(o.param_bytes for o in seg0.ops) == seg0.param_bytes  # every constant counted once
    assert seg0.dtype == "int8" and seg0.input_bytes == 256 and seg0.output_bytes == 4 * 64
    seg = sum(profile_tflite(tflite_artifacts[f"segment_{i}"]).macs for i in range(3))
    assert profile_tflite(tflite_artifacts["whole"]).macs == seg
    assert seg0.cost().macs == seg0.macs and seg0.cost().weight_bytes == seg0.param_bytes


def test_onnx_walk_folds_qdq_and_matches_the_tflite_macs(
    onnx_artifacts: dict[str, bytes], tflite_artifacts: dict[str, bytes]
) -> None:
    for name in ("segment_0", "segment_1", "segment_2"):
        onnx = profile_onnx(onnx_artifacts[name], name)
        assert not {"QuantizeLinear", "DequantizeLinear"} & set(onnx.op_names())
        assert onnx.macs == profile_tflite(tflite_artifacts[name]).macs
        conv = [o for o in onnx.ops if o.macs]
        assert conv and all(o.dtype == "int8" for o in conv)
        assert onnx.plan.peak_bytes > 0


def test_onnx_without_the_package_says_which_extra(
    monkeypatch: pytest.MonkeyPatch, onnx_artifacts: dict[str, bytes]
) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    with pytest.raises(MissingExtraError, match=r"onnx is not installed.*kasmina-edge\[host\]"):
        profile_onnx(onnx_artifacts["segment_0"])


def test_unreadable_models_are_one_line_errors() -> None:
    with pytest.raises(GraphError, match="not a readable TFLite"):
        profile_tflite(b"\x00" * 16 + b"garbage", "broken")
    with pytest.raises(GraphError, match="not a readable ONNX"):
        profile_onnx(b"\xff\xfe not protobuf", "broken")
    with pytest.raises(GraphError, match="no graph walk"):
        profile_graph(b"", "c-source")


def test_format_is_sniffed_from_the_content(
    tflite_artifacts: dict[str, bytes], onnx_artifacts: dict[str, bytes]
) -> None:
    assert sniff_format(tflite_artifacts["segment_0"]) == "tflite"
    assert sniff_format(onnx_artifacts["segment_0"]) == "onnx"
