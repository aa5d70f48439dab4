"""Seed kernels through the lifecycle on the device: gates, alpha ramp, retire, embargo, reset, rollback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers_runtime import KERNEL0, KERNEL1, NAN_KERNEL, Clock, Events, image, windows

from kasmina_edge.contracts.events import GateVerdict, SeedTransition
from kasmina_edge.contracts.lifecycle import Gate, Stage
from kasmina_edge.runtime.executor import SegmentedExecutor
from kasmina_edge.runtime.health import HealthLimits, HealthMonitor
from kasmina_edge.runtime.lifecycle import LifecycleConfig, SeedManager

# the walk through the stages under the confidence rules (label-free evidence: test_evidence.py)
CFG = LifecycleConfig(blend_windows=4, shadow_windows=3, probation_windows=5, judge="confidence")


def _manager(img, clock=None, config=CFG):  # type: ignore[no-untyped-def]
    ex = SegmentedExecutor(img)
    events = Events()
    # the fixture model has random weights: its top-class probability sits near 0.3, so no absolute floor here
    health = HealthMonitor(HealthLimits(confidence_floor=0.05))
    mgr = SeedManager(ex, health, clock=clock or Clock(), sink=events.append, config=config)
    return ex, mgr, events


def _run(ex, mgr, n, seed=1):  # type: ignore[no-untyped-def]
    x, rr = windows(n, seed)
    alphas = []
    for i in range(n):
        r = ex.infer(x[i], rr[i])
        for f in mgr.health.check(r, ex.config, mgr.window):
            mgr.on_fault(f)
        mgr.tick(r)
        alphas.append(ex.config.slots)
    return alphas


def test_activation_walks_every_stage_with_its_gate(bundles: Path, keys: Path) -> None:
    img = image(bundles, keys)
    ex, mgr, events = _manager(img)
    assert mgr.activate(KERNEL1, 1.0, "test", baseline_confidence=0.3)
    assert mgr.stage(KERNEL1) is Stage.BLENDING
    assert ex.config.slots[1].alpha == pytest.approx(0.25)
    slots = _run(ex, mgr, 4 + 3 + 5 + 2)
    alphas = [s[1].alpha for s in slots]
    assert alphas[:4] == pytest.approx([0.5, 0.75, 1.0, 1.0])  # the ramp, one step per window
    assert mgr.stage(KERNEL1) is Stage.FOSSILIZED
    assert events.transitions(KERNEL1) == [
        ("DORMANT", "GERMINATED"), ("GERMINATED", "TRAINING"), ("TRAINING", "BLENDING"),
        ("BLENDING", "SHADOWING"), ("SHADOWING", "PROBATIONARY"), ("PROBATIONARY", "FOSSILIZED"),
    ]
    gates = [e.transition.gate for e in events.of(SeedTransition) if e.transition.gate is not None]
    assert [g.gate.value for g in gates] == ["G0", "G1", "G2", "G3", "G4"] and all(g.passed for g in gates)
    g3 = next(g for g in gates if g.gate is Gate.G3)
    assert g3.metrics["shadow_windows"] == 3  # the shadow comparison ran for every window
    assert ex.config.slots[1].shadow is False


def test_no_host_g1_verdict_means_no_blending(bundles: Path, keys: Path) -> None:
    img = image(bundles, keys)
    img.kernels[KERNEL0].g1 = None
    ex, mgr, events = _manager(img)
    assert not mgr.activate(KERNEL0, 1.0, "test", 0.3)
    assert mgr.stage(KERNEL0) is Stage.EMBARGOED
    assert ex.config.slots[0].candidate is None
    assert any(e.result.gate is Gate.G1 and not e.result.passed and e.site == 0 for e in events.of(GateVerdict))
    assert ("TRAINING", "CULLED") in events.transitions(KERNEL0)


def test_reference_mismatch_fails_g0_and_is_not_retried(bundles: Path, keys: Path) -> None:
    img = image(bundles, keys)
    img.references[KERNEL0] = {**img.references[KERNEL0], "out": img.references[KERNEL0]["out"] // 2 + 7}
    ex, mgr, events = _manager(img)
    assert not mgr.activate(KERNEL0, 1.0, "test", 0.3)
    assert mgr.stage(KERNEL0) is Stage.DORMANT and KERNEL0 in mgr.rejected
    assert KERNEL0 not in mgr.available()
    fail = events.of(GateVerdict)[0]
    assert fail.result.gate is Gate.G0 and "reference vectors differ" in fail.result.reason


def test_boot_live_goes_through_the_same_g0_and_g1(bundles: Path, keys: Path) -> None:
    """Activation and boot share one G0/G1 path: boot fossilizes on passing gates, and the same failures end
    the same way (no G1 verdict: culled from TRAINING; a reference mismatch: DORMANT and rejected)."""
    img = image(bundles, keys)
    ex, mgr, events = _manager(img)
    assert mgr.boot_live(KERNEL1)
    assert mgr.stage(KERNEL1) is Stage.FOSSILIZED and ex.config.slots[1].candidate is img.kernels[KERNEL1]
    gates = [e.transition.gate for e in events.of(SeedTransition) if e.transition.gate is not None]
    assert [g.gate.value for g in gates] == ["G0", "G1", "G2", "G3", "G4"]
    assert gates[0].reason.startswith("loaded, fits its site") and gates[1].reason.startswith("host verdict")

    img = image(bundles, keys)
    img.kernels[KERNEL0].g1 = None
    ex, mgr, events = _manager(img)
    assert not mgr.boot_live(KERNEL0)
    assert mgr.stage(KERNEL0) is Stage.EMBARGOED and ex.config.slots[0].candidate is None
    assert ("TRAINING", "CULLED") in events.transitions(KERNEL0)
    culled = next(e for e in events.of(SeedTransition) if e.transition.dst is Stage.CULLED)
    assert culled.transition.reason == "g1_missing"

    img = image(bundles, keys)
    img.references[KERNEL0] = {**img.references[KERNEL0], "out": img.references[KERNEL0]["out"] // 2 + 7}
    ex, mgr, events = _manager(img)
    assert not mgr.boot_live(KERNEL0)
    assert mgr.stage(KERNEL0) is Stage.DORMANT and KERNEL0 in mgr.rejected
    assert events.transitions(KERNEL0) == []


def test_retire_embargo_and_reset(bundles: Path, keys: Path) -> None:
    img = image(bundles, keys)
    clock = Clock()
    ex, mgr, events = _manager(img, clock)
    mgr.activate(KERNEL1, 1.0, "test", 0.3)
    _run(ex, mgr, 3)
    assert mgr.retire(KERNEL1, "condition_cleared")
    assert ex.config.slots[1].candidate is None  # rolled back before the next window
    assert mgr.stage(KERNEL1) is Stage.EMBARGOED
    clock.t = 29.0
    _run(ex, mgr, 1)
    assert mgr.stage(KERNEL1) is Stage.EMBARGOED and KERNEL1 not in mgr.available()
    clock.t = 30.5  # the short hysteresis for condition_cleared
    _run(ex, mgr, 1)
    assert mgr.stage(KERNEL1) is Stage.DORMANT and KERNEL1 in mgr.available()
    g5 = [e for e in events.of(SeedTransition) if e.transition.gate is not None and e.transition.gate.gate is Gate.G5]
    assert g5 and g5[0].transition.gate is not None and g5[0].transition.gate.passed and g5[0].t == 30.5


def test_fault_rolls_back_to_the_previous_kernel_and_embargoes_long(bundles: Path, keys: Path) -> None:
    img = image(bundles, keys, "x86")
    clock = Clock()
    ex, mgr, events = _manager(img, clock)
    mgr.activate(KERNEL0, 1.0, "first", 0.3)
    _run(ex, mgr, 4 + 3 + 5 + 1)
    assert mgr.stage(KERNEL0) is Stage.FOSSILIZED
    assert mgr.activate(NAN_KERNEL, 1.0, "second", 0.3)
    assert ex.config.slots[0].base is img.kernels[KERNEL0]  # blended over the previous kernel
    x, rr = windows(30, 9)
    for i in range(30):
        r = ex.infer(x[i], rr[i])
        faults = mgr.health.check(r, ex.config, mgr.window)
        for f in faults:
            mgr.on_fault(f)
        mgr.tick(r)
        if faults:
            assert faults[0].code == "health_nan"
            slot = ex.config.slots[0]
            assert slot.candidate is img.kernels[KERNEL0] and slot.alpha == 1.0 and slot.base is None
            break
    else:
        pytest.fail("the NaN kernel never faulted")
    assert mgr.stage(NAN_KERNEL) is Stage.EMBARGOED and mgr.stage(KERNEL0) is Stage.FOSSILIZED
    assert mgr.health.breaker(NAN_KERNEL).is_open
    clock.t = 100.0
    _run(ex, mgr, 1)
    assert mgr.stage(NAN_KERNEL) is Stage.EMBARGOED  # faults wait the long embargo (600 s)
    clock.t = 700.0
    _run(ex, mgr, 1)
    assert mgr.stage(NAN_KERNEL) is Stage.DORMANT and not mgr.health.breaker(NAN_KERNEL).is_open
    assert np.isfinite(ex.infer(x[0], rr[0]).probs).all()
