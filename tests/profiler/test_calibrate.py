"""Efficiency fitted to published latencies, and the leave-one-model-out check."""

from __future__ import annotations

import math

import pytest

from kasmina_edge.core.catalog import hardware
from kasmina_edge.profiler.calibrate import Published, calibrate, fit_efficiency, ratios, transfer
from kasmina_edge.profiler.graph import GraphProfile, OpStats, greedy_plan
from kasmina_edge.profiler.latency import estimate_graph


def _graph(name: str, macs: int) -> GraphProfile:
    ops = [OpStats(i, "CONV_2D", "int8", macs // 4, 0, 64, 256, 256) for i in range(4)]
    return GraphProfile(name=name, format="tflite", ops=ops, param_bytes=256, input_bytes=256, output_bytes=64,
                        plan=greedy_plan([]), tensors=9, inputs=1, outputs=1, size_bytes=1000)


def _points(true_efficiency: float, slowdowns: list[float]) -> list[Published]:
    """Published latencies made by the roofline itself at ``true_efficiency`` (times a per-model slowdown)."""
    mcu = hardware("stm32f446")
    truth = mcu.model_copy(update={"efficiency": true_efficiency})
    out = []
    for i, slow in enumerate(slowdowns):
        g = _graph(f"m{i}", 4_000_000 * (i + 1))
        out.append(Published(g.name, g, mcu, estimate_graph(g, truth).total_s * slow))
    return out


def test_fit_recovers_the_efficiency_that_made_the_latencies() -> None:
    points = _points(0.07, [1.0, 1.0, 1.0])
    e = fit_efficiency(points)
    assert e == pytest.approx(0.07, rel=1e-3)
    assert all(r == pytest.approx(1.0, rel=1e-3) for r in ratios(points, e))


def test_fit_sets_the_median_ratio_to_one_and_leave_one_out_judges_each_model() -> None:
    points = _points(0.1, [0.8, 1.0, 1.3, 2.0])  # models the roofline gets more or less right
    c = calibrate("board / runtime", points)
    after = sorted(c.after.values())
    assert 0.5 * (after[1] + after[2]) == pytest.approx(1.0, abs=0.02)  # median of an even count
    assert [h.model for h in c.held_out] == [p.model for p in points]
    # the held-out model's ratio is the one its own fit (on the others) gives it
    for h in c.held_out:
        p = next(q for q in points if q.model == h.model)
        assert h.ratio == pytest.approx(ratios([p], h.efficiency)[0])
        assert h.efficiency != pytest.approx(c.efficiency, rel=1e-6) or len(points) == 1
    assert c.to_dict()["within_0.67_1.5"] == (0.67 <= c.held_out_median <= 1.5)


def test_unreachable_published_latency_clamps_to_the_range() -> None:
    points = _points(0.5, [1e-6, 1e-6])  # faster than the roofline at efficiency 1 could ever say
    assert fit_efficiency(points) == 1.0
    assert transfer(0.2, 0.5) == pytest.approx(0.1) and transfer(0.9, 3.0) == 1.0
    assert math.isfinite(calibrate("x", points).held_out_median)
