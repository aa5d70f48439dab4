"""TFLite Micro arena: the estimate against what the interpreter reports, on the fixture's MCU artifacts."""

from __future__ import annotations

import importlib.util

import pytest

from kasmina_edge.profiler.graph import profile_onnx, profile_tflite
from kasmina_edge.profiler.tflm_arena import compare_arenas, estimate_arena


def test_head_is_the_greedy_plan_and_tail_grows_with_the_graph(tflite_artifacts: dict[str, bytes]) -> None:
    small = estimate_arena(profile_tflite(tflite_artifacts["segment_0"], "segment_0"))
    whole = estimate_arena(profile_tflite(tflite_artifacts["whole"], "whole"))
    assert small.head_bytes == profile_tflite(tflite_artifacts["segment_0"]).plan.peak_bytes
    assert whole.tail_bytes > small.tail_bytes  # more tensors and ops, more persistent records
    assert small.total_bytes == small.head_bytes + sum(small.parts.values())
    assert not whole.unmeasured_ops


def test_arena_estimate_refuses_onnx(onnx_artifacts: dict[str, bytes]) -> None:
    with pytest.raises(ValueError, match="TFLite Micro runs TFLite"):
        estimate_arena(profile_onnx(onnx_artifacts["segment_0"]))


@pytest.mark.skipif(
    importlib.util.find_spec("tflite_micro") is None, reason="tflite-micro wheel not installed"
)
def test_estimate_within_10_percent_of_the_interpreter(tflite_artifacts: dict[str, bytes]) -> None:
    rows = compare_arenas(tflite_artifacts, measure=True)
    assert {r.name for r in rows} == set(tflite_artifacts)
    for r in rows:
        assert r.measured_bytes is not None, r
        assert r.ratio is not None and abs(r.ratio - 1.0) <= 0.10, r.to_dict()
