"""Lifecycle engine and gates G0–G5, and the grafting strategies that drive BLENDING."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest

from kasmina_edge.contracts.errors import IllegalTransitionError
from kasmina_edge.contracts.lifecycle import Gate, Stage
from kasmina_edge.host.kasmina import (
    CURVES,
    GRAFTING_STRATEGIES,
    GradientHealthInputs,
    GraftingError,
    GraftSignals,
    InterfaceInputs,
    LifecycleEngine,
    ResetInputs,
    SanityInputs,
    StabilityInputs,
    SystemImpactInputs,
    evaluate_gate,
    make_grafting,
)
from kasmina_edge.host.kasmina.gates import oscillation

GOOD = {
    Gate.G0: SanityInputs("bottleneck_adapter", True, True, 64, 1000, 100, 2000, "edgetpu", True),
    Gate.G1: GradientHealthInputs(0, False, [1.0, 0.9, 0.8, 0.7, 0.6, 0.5], [0.2, 0.1, 0.3, 0.2, 0.1]),
    Gate.G2: StabilityInputs([0.0, 0.5, 1.0], 0.4, [0.80, 0.81, 0.82]),
    Gate.G3: InterfaceInputs((2, 8, 32), (2, 8, 32), "torch.float32", "torch.float32", True),
    Gate.G4: SystemImpactInputs(0.85, 0.80, global_metric=0.95, global_reference=0.955, min_gain=0.02),
    Gate.G5: ResetInputs(True, 0, 0.0, True, True),
}

BAD = [
    (Gate.G0, {"registered": False}, "not registered"),
    (Gate.G0, {"params_finite": False}, "non-finite"),
    (Gate.G0, {"param_count": 101}, "budget 100"),
    (Gate.G0, {"macs": 2001}, "MACs 2001"),
    (Gate.G0, {"target_ok": False}, "cannot run"),
    (Gate.G1, {"isolation_violations": 1}, "isolation violated"),
    (Gate.G1, {"breaker_tripped": True}, "breaker"),
    (Gate.G1, {"seed_losses": [0.5, 0.6, 0.7, 0.8, 0.9]}, "not falling"),
    (Gate.G1, {"seed_losses": [1.0, 0.9]}, "history 2 < window 5"),
    (Gate.G1, {"seed_losses": [1.0, 0.9, math.nan, 0.7, 0.6]}, "not finite"),
    (Gate.G1, {"grad_norms": [0.1, 5e3, 0.1]}, "above"),
    (Gate.G1, {"grad_norms": [0.0, 0.0]}, "below"),
    (Gate.G2, {"alphas": [0.0, 0.6, 0.5, 1.0]}, "backwards"),
    (Gate.G2, {"alphas": [0.0, 0.3]}, "alpha 0.300"),
    (Gate.G2, {"drift": 4.0}, "drift 4"),
    (Gate.G2, {"val_metrics": [0.8, 0.9, 0.7, 0.9, 0.7]}, "oscillating"),
    (Gate.G3, {"got_shape": (2, 8, 31)}, "shape"),
    (Gate.G3, {"got_dtype": "torch.float16"}, "dtype"),
    (Gate.G3, {"export_ok": False, "export_error": "boom"}, "export failed: boom"),
    (Gate.G3, {"telemetry_missing": ("drift",)}, "telemetry missing drift"),
    (Gate.G4, {"val_metric": 0.70}, "worse than baseline"),
    (Gate.G4, {"global_metric": 0.90}, "global metric"),
    (Gate.G4, {"val_metric": 0.81}, "gain"),
    (Gate.G5, {"slot_empty": False, "params_remaining": 12}, "12 params remain"),
    (Gate.G5, {"alpha": 0.3}, "alpha"),
    (Gate.G5, {"counters_clear": False}, "counters"),
    (Gate.G5, {"caches_clear": False}, "caches"),
]


@pytest.mark.parametrize("gate", list(Gate))
def test_gate_passes_on_good_measurements(gate: Gate) -> None:
    result = evaluate_gate(gate, GOOD[gate])
    assert result.passed, result.reason
    assert result.gate is gate


@pytest.mark.parametrize(("gate", "change", "reason"), BAD)
def test_gate_fails_on_each_bad_measurement(gate: Gate, change: dict[str, object], reason: str) -> None:
    result = evaluate_gate(gate, replace(GOOD[gate], **change))  # type: ignore[type-var]
    assert not result.passed
    assert reason in result.reason


def test_unknown_or_unevaluated_gate_fails() -> None:
    assert not evaluate_gate(Gate.G2, None).passed
    assert "not evaluated" in evaluate_gate(Gate.G2, None).reason
    assert not evaluate_gate(Gate.G2, GOOD[Gate.G1]).passed  # measurements of another gate
    assert not evaluate_gate("G9", GOOD[Gate.G1]).passed


def test_oscillation_is_zero_for_monotone_series() -> None:
    assert oscillation([0.1, 0.2, 0.3, 0.3]) == 0.0
    assert oscillation([0.1, 0.3, 0.1, 0.3]) > 0.1


def _walk(engine: LifecycleEngine, sid: str, until: Stage) -> None:
    engine.register(sid)
    for gate_or_none in (Gate.G0, None, Gate.G1, Gate.G2, Gate.G3, Gate.G4):
        if engine.stage(sid) is until:
            return
        engine.try_advance(sid, GOOD[gate_or_none] if gate_or_none else None)


def test_forward_path_emits_every_transition_and_gate(engine: LifecycleEngine, events: list[dict[str, object]]) -> None:
    _walk(engine, "s0", Stage.FOSSILIZED)
    assert engine.stage("s0") is Stage.FOSSILIZED
    moves = [(e["from"], e["to"]) for e in events if e["event"] == "transition"]
    assert moves[0] == ("DORMANT", "GERMINATED") and moves[-1] == ("PROBATIONARY", "FOSSILIZED")
    assert [e["gate"] for e in events if e["event"] == "gate"] == ["G0", "G1", "G2", "G3", "G4"]
    json.dumps(events)  # the morph engine writes these as JSON lines


def test_failed_gate_culls_then_embargo_then_reset(engine: LifecycleEngine, events: list[dict[str, object]], clock: object) -> None:
    resets = []

    def on_reset() -> ResetInputs:
        resets.append(1)
        return GOOD[Gate.G5]  # type: ignore[return-value]

    engine.register("s1", on_reset=on_reset)
    _walk(engine, "s1", Stage.TRAINING)
    bad = replace(GOOD[Gate.G1], seed_losses=[1, 1, 1, 1, 1])  # type: ignore[type-var]
    ev = engine.try_advance("s1", bad)
    assert ev.dst is Stage.EMBARGOED
    lc = engine.lifecycle("s1")
    assert lc.cull_reason is not None and lc.cull_reason.startswith("gate_G1_failed: seed loss not falling")
    assert engine.tick() == [] and resets == []
    clock.advance(engine.embargo.fault_s - 1)  # type: ignore[attr-defined]
    assert engine.tick() == []
    clock.advance(2)  # type: ignore[attr-defined]
    assert [e.dst for e in engine.tick()] == [Stage.RESETTING, Stage.DORMANT]
    assert resets == [1]
    assert [e["to"] for e in events if e["event"] == "transition"][-5:] == [
        "TRAINING", "CULLED", "EMBARGOED", "RESETTING", "DORMANT",
    ]  # fmt: skip


def test_condition_cleared_has_short_embargo(engine: LifecycleEngine, clock: object) -> None:
    engine.register("s2", on_reset=lambda: GOOD[Gate.G5])  # type: ignore[arg-type, return-value]
    _walk(engine, "s2", Stage.FOSSILIZED)
    engine.cull("s2", "condition_cleared")
    clock.advance(engine.embargo.hysteresis_s + 0.1)  # type: ignore[attr-defined]
    assert engine.tick()[-1].dst is Stage.DORMANT


def test_g5_failure_keeps_the_seed_resetting(engine: LifecycleEngine, clock: object) -> None:
    dirty = replace(GOOD[Gate.G5], caches_clear=False)  # type: ignore[type-var]
    engine.register("s3", on_reset=lambda: dirty)  # type: ignore[arg-type, return-value]
    _walk(engine, "s3", Stage.TRAINING)
    engine.cull("s3", "health_nan")
    clock.advance(1e6)  # type: ignore[attr-defined]
    engine.tick()
    assert engine.stage("s3") is Stage.RESETTING
    engine.register("s3", on_reset=lambda: GOOD[Gate.G5])  # type: ignore[arg-type, return-value]
    engine.tick()
    assert engine.stage("s3") is Stage.DORMANT


def test_teardown_and_illegal_moves(engine: LifecycleEngine) -> None:
    _walk(engine, "s4", Stage.BLENDING)
    engine.terminate("s4")
    assert engine.stage("s4") is Stage.TERMINATED
    with pytest.raises(IllegalTransitionError):
        engine.move("s4", Stage.DORMANT, reason="no")
    with pytest.raises(IllegalTransitionError, match="no forward move"):
        engine.try_advance("s4")
    with pytest.raises(IllegalTransitionError, match="unknown seed"):
        engine.stage("nope")
    engine.register("s5")
    with pytest.raises(IllegalTransitionError, match="needs gate G0"):
        engine.move("s5", Stage.GERMINATED, reason="skip the gate")
    with pytest.raises(IllegalTransitionError, match="gate_G0_failed"):
        engine.try_advance("s5", None, cull_on_fail=False)  # DORMANT cannot be culled: it raises


# -- grafting ----------------------------------------------------------------------------------
@pytest.mark.parametrize("curve", list(CURVES))
def test_curves_are_monotone_with_exact_endpoints(curve: str) -> None:
    f = CURVES[curve]
    assert f(0.0) == 0.0 and f(1.0) == 1.0
    ys = [f(i / 100) for i in range(101)]
    assert all(b >= a for a, b in zip(ys, ys[1:], strict=False))
    assert 0.0 < f(0.5) < 1.0


@pytest.mark.parametrize("name", list(GRAFTING_STRATEGIES))
@pytest.mark.parametrize("curve", list(CURVES))
def test_strategies_reach_one_when_signals_are_good(name: str, curve: str) -> None:
    g = make_grafting(name, steps=8, curve=curve)
    good = GraftSignals(val_metric=0.9, baseline_metric=0.8, drift=0.1, grad_norm=0.1)
    alphas = [g.alpha] + [g.step(good) for _ in range(10)]
    assert alphas[0] == 0.0 and alphas[-1] == 1.0 and g.done
    assert all(b >= a for a, b in zip(alphas, alphas[1:], strict=False))


def test_drift_controlled_holds_alpha_when_drift_exceeds_bound() -> None:
    g = make_grafting("drift_controlled", steps=10, max_drift=0.5)
    a1 = g.step(GraftSignals(drift=0.2))
    a2 = g.step(GraftSignals(drift=0.2))
    held = [g.step(GraftSignals(drift=0.9)) for _ in range(5)]
    assert 0 < a1 < a2 and held == [a2] * 5
    assert g.step(GraftSignals(drift=0.4)) > a2
    assert g.step(GraftSignals()) == g.alpha  # no measurement: hold


def test_performance_and_gradnorm_strategies_hold_on_bad_signals() -> None:
    p = make_grafting("performance_linked", steps=4, tolerance=0.01)
    assert p.step(GraftSignals(val_metric=0.70, baseline_metric=0.80)) == 0.0
    assert p.step(GraftSignals(val_metric=0.795, baseline_metric=0.80)) == 0.25
    gn = make_grafting("grad_norm_gated", steps=4, max_grad_norm=1.0)
    assert gn.step(GraftSignals(grad_norm=math.inf)) == 0.0
    assert gn.step(GraftSignals(grad_norm=3.0)) == 0.0
    assert gn.step(GraftSignals(grad_norm=0.5)) == 0.25


def test_grafting_errors() -> None:
    with pytest.raises(GraftingError, match="unknown grafting strategy"):
        make_grafting("teleport")
    with pytest.raises(GraftingError, match="unknown curve"):
        make_grafting("fixed_ramp", curve="square")
    with pytest.raises(GraftingError, match="steps"):
        make_grafting("fixed_ramp", steps=0)
