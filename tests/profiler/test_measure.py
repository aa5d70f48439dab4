"""Measurement: pinned to one core and put back, warm-up, percentiles in order."""

from __future__ import annotations

import os

import pytest

from kasmina_edge.profiler.measure import MIN_RUNS, backends_for, measure, measure_all, pinned

needs_affinity = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no sched_setaffinity here")


@needs_affinity
def test_pinned_to_one_core_then_restored() -> None:
    before = os.sched_getaffinity(0)
    with pinned() as cpu:
        assert cpu is not None and os.sched_getaffinity(0) == {cpu}
    assert os.sched_getaffinity(0) == before


def test_measure_one_artifact(tflite_artifacts: dict[str, bytes]) -> None:
    label, backend = backends_for("tflite-int8")[0]
    m = measure(tflite_artifacts["segment_0"], "segment_0", label, backend, warmup=5, runs=60, budget_s=1.0)
    assert MIN_RUNS <= m.runs <= 60 and m.warmup == 5
    assert 0 < m.min_s <= m.p50_s <= m.p90_s <= m.p99_s <= m.max_s
    assert m.spread >= 1.0 and len(m.samples_s) == m.runs
    assert "samples_s" not in m.to_dict() and "samples_s" in m.to_dict(samples=True)


def test_every_runtime_that_runs_the_format(onnx_artifacts: dict[str, bytes]) -> None:
    labels = [label for label, _ in backends_for("tflite-int8")]
    assert labels[:2] == ["litert (xnnpack)", "litert (builtin)"]
    assert [label for label, _ in backends_for("onnx-qdq")] == ["onnxruntime"]
    got, skipped = measure_all(
        {"segment_0": (onnx_artifacts["segment_0"], "onnx-qdq", None), "odd": (b"", "c-source", None)},
        warmup=2,
        runs=25,
        budget_s=0.5,
    )
    assert [(m.artifact, m.backend) for m in got] == [("segment_0", "onnxruntime")]
    assert skipped == ["odd: no runtime here runs c-source"]
