"""Health: latency over budget, drift explosion, confidence collapse open the breaker and roll the slot back."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from helpers_runtime import KERNEL1, Clock, Events, image, windows

from kasmina_edge.contracts.events import FaultRollback
from kasmina_edge.contracts.lifecycle import Stage
from kasmina_edge.runtime.executor import (
    ChainConfig,
    SegmentedExecutor,
    SiteObservation,
    SlotConfig,
    WindowResult,
)
from kasmina_edge.runtime.health import HealthLimits, HealthMonitor
from kasmina_edge.runtime.lifecycle import LifecycleConfig, SeedManager


def _live(bundles: Path, keys: Path, limits: HealthLimits, target: str = "linux-arm"):  # type: ignore[no-untyped-def]
    img = image(bundles, keys, target)
    ex = SegmentedExecutor(img)
    events = Events()
    mgr = SeedManager(ex, HealthMonitor(limits), clock=Clock(), sink=events.append,
                      config=LifecycleConfig(blend_windows=2, shadow_windows=2, probation_windows=50, judge="confidence"))
    assert mgr.activate(KERNEL1, 1.0, "test", 0.3)
    return img, ex, mgr, events


def _step(ex, mgr, x, rr):  # type: ignore[no-untyped-def]
    r = ex.infer(x, rr)
    faults = mgr.health.check(r, ex.config, mgr.window)
    for f in faults:
        mgr.on_fault(f)
    mgr.tick(r)
    return r, faults


def test_kernel_over_its_latency_budget_is_rolled_back(bundles: Path, keys: Path) -> None:
    limits = HealthLimits(latency_floor_s=1e-3, latency_factor=1.0, latency_strikes=3, confidence_floor=0.0)
    img, ex, mgr, events = _live(bundles, keys, limits)
    model = img.kernels[KERNEL1].model
    fast_run = model.run

    def slow_run(*a):  # type: ignore[no-untyped-def]
        time.sleep(0.004)  # 4 ms per invoke, over the 1 ms budget
        return fast_run(*a)

    model.run = slow_run  # type: ignore[method-assign]
    try:
        x, rr = windows(10)
        seen = []
        for i in range(10):
            r, faults = _step(ex, mgr, x[i], rr[i])
            seen.append(faults)
            assert r.finite  # classification never stops
            if faults:
                break
        assert [bool(f) for f in seen] == [False, False, True]  # three strikes, not one slow window
        assert seen[-1][0].code == "health_latency" and seen[-1][0].metrics["kernel_ms"] > 1.0
        assert ex.config.slots[1].candidate is None  # the next window runs without it
        assert mgr.stage(KERNEL1) is Stage.EMBARGOED
        r, _ = _step(ex, mgr, x[5], rr[5])
        assert r.sites[1].kernel_s == 0.0
    finally:
        model.run = fast_run  # type: ignore[method-assign]


def test_kernel_that_blows_up_its_site_is_rolled_back(bundles: Path, keys: Path) -> None:
    img, ex, mgr, events = _live(bundles, keys, HealthLimits(confidence_floor=0.0), target="x86")
    model = img.kernels[KERNEL1].model
    real = model.run
    model.run = lambda *a: real(*a) * 1000.0  # type: ignore[method-assign]  # float QDQ output: a real explosion
    try:
        x, rr = windows(3)
        _, faults = _step(ex, mgr, x[0], rr[0])
        assert faults and faults[0].code == "health_drift"
        assert ex.config.slots[1].candidate is None
        rollback = events.of(FaultRollback)
        assert rollback and rollback[0].fault.code == "health_drift" and rollback[0].fault.kernel == KERNEL1
    finally:
        model.run = real  # type: ignore[method-assign]


def test_confidence_collapse_opens_the_breaker() -> None:
    class K:
        name = "k"

    limits = HealthLimits(confidence_windows=4, confidence_floor=0.3)
    mon = HealthMonitor(limits)
    mon.watch("k", 0, budget_s=1.0, baseline_confidence=0.9)
    cfg = ChainConfig((SlotConfig(candidate=K(), alpha=1.0),))  # type: ignore[arg-type]
    uniform = np.full(5, 0.2, np.float32)
    faults = []
    for w in range(4):
        res = WindowResult(np.zeros(5, np.float32), uniform, 0, 0.0, [SiteObservation(kernel_s=1e-5)], 0)
        faults = mon.check(res, cfg, w)
        if w < 3:
            assert faults == []
    assert faults and faults[0].code == "health_confidence"
    assert mon.breaker("k").is_open and mon.breaker("k").trips == 1
    assert not mon.watching("k")


def test_healthy_kernel_is_left_alone(bundles: Path, keys: Path) -> None:
    img, ex, mgr, events = _live(bundles, keys, HealthLimits(confidence_floor=0.05))
    x, rr = windows(20)
    for i in range(20):
        _, faults = _step(ex, mgr, x[i], rr[i])
        assert faults == []
    assert mgr.stage(KERNEL1) is Stage.PROBATIONARY
    assert not mgr.health.breaker(KERNEL1).is_open
    with pytest.raises(AssertionError):
        assert mgr.health.breaker(KERNEL1).is_open
