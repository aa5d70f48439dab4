"""Gates G0–G5: pure functions from a small dataclass of measurements to a GateResult.

The measurements are taken by the KasminaLayer (and the morph engine for validation metrics);
each dataclass also carries the bounds it is judged against, so one verdict is reproducible
from its event alone. A gate whose measurements are missing or of the wrong kind fails.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from kasmina_edge.contracts.lifecycle import Gate, GateResult


@dataclass(frozen=True)
class SanityInputs:
    """G0, DORMANT -> GERMINATED."""

    blueprint: str
    registered: bool
    params_finite: bool
    param_count: int
    macs: int
    max_params: int | None = None
    max_macs: int | None = None
    target: str | None = None
    target_ok: bool = True


@dataclass(frozen=True)
class GradientHealthInputs:
    """G1, TRAINING -> BLENDING."""

    isolation_violations: int
    breaker_tripped: bool
    seed_losses: Sequence[float]
    grad_norms: Sequence[float]
    window: int = 5
    min_relative_drop: float = 0.0  # the last third's mean must be below the first third's by this much
    grad_norm_min: float = 1e-12  # below: the seed is not learning at all
    grad_norm_max: float = 1e3  # above: exploding


@dataclass(frozen=True)
class StabilityInputs:
    """G2, BLENDING -> SHADOWING."""

    alphas: Sequence[float]
    drift: float
    val_metrics: Sequence[float]
    max_drift: float = 3.0  # in standard deviations of the chunk's reference activation
    alpha_done: float = 0.99  # the schedule must have reached (about) full alpha
    max_oscillation: float = 0.02  # excess variation per step of the validation metric


@dataclass(frozen=True)
class InterfaceInputs:
    """G3, SHADOWING -> PROBATIONARY."""

    expected_shape: tuple[int, ...]
    got_shape: tuple[int, ...]
    expected_dtype: str
    got_dtype: str
    export_ok: bool
    export_error: str = ""
    telemetry_missing: Sequence[str] = ()
    telemetry_finite: bool = True


@dataclass(frozen=True)
class SystemImpactInputs:
    """G4, PROBATIONARY -> FOSSILIZED. Metrics are 'higher is better' (e.g. macro-F1)."""

    val_metric: float  # with the seed, on the condition it was grown for
    baseline_metric: float  # before germination, same data
    global_metric: float | None = None  # with the seed, on the global (e.g. clean) validation set
    global_reference: float | None = None  # host alone on that set
    tolerance: float = 0.01  # how much worse the global metric may get
    min_gain: float = 0.0  # improvement over the baseline needed to fossilize


@dataclass(frozen=True)
class ResetInputs:
    """G5, RESETTING -> DORMANT."""

    slot_empty: bool
    params_remaining: int
    alpha: float
    counters_clear: bool
    caches_clear: bool


def _result(gate: Gate, failures: list[str], ok_reason: str, metrics: dict[str, float]) -> GateResult:
    if failures:
        return GateResult(gate, False, "; ".join(failures), metrics)
    return GateResult(gate, True, ok_reason, metrics)


def g0_sanity(m: SanityInputs) -> GateResult:
    failures: list[str] = []
    if not m.registered:
        failures.append(f"blueprint {m.blueprint!r} not registered")
    if not m.params_finite:
        failures.append("non-finite parameters")
    if m.max_params is not None and m.param_count > m.max_params:
        failures.append(f"params {m.param_count} > budget {m.max_params}")
    if m.max_macs is not None and m.macs > m.max_macs:
        failures.append(f"MACs {m.macs} > budget {m.max_macs}")
    if m.target is not None and not m.target_ok:
        failures.append(f"target {m.target} cannot run {m.blueprint!r}")
    metrics = {"param_count": float(m.param_count), "macs": float(m.macs)}
    return _result(Gate.G0, failures, f"{m.blueprint}: registered, finite, within budget", metrics)


def _thirds(xs: Sequence[float]) -> tuple[float, float]:
    k = max(1, len(xs) // 3)
    return sum(xs[:k]) / k, sum(xs[-k:]) / k


def g1_gradient_health(m: GradientHealthInputs) -> GateResult:
    failures: list[str] = []
    losses = list(m.seed_losses)[-m.window :]
    norms = list(m.grad_norms)[-m.window :]
    metrics: dict[str, float] = {"isolation_violations": float(m.isolation_violations)}
    if m.isolation_violations > 0:
        failures.append(f"isolation violated {m.isolation_violations}x")
    if m.breaker_tripped:
        failures.append("isolation circuit breaker open")
    if len(losses) < m.window:
        failures.append(f"seed loss history {len(losses)} < window {m.window}")
    elif not all(math.isfinite(v) for v in losses):
        failures.append("seed loss not finite")
    else:
        first, last = _thirds(losses)
        metrics.update(loss_first=first, loss_last=last)
        if not last < first * (1.0 - m.min_relative_drop):
            failures.append(f"seed loss not falling ({first:.4g} -> {last:.4g})")
    if not norms:
        failures.append("no gradient norm measured")
    else:
        hi, lo = max(norms), min(norms)
        metrics.update(grad_norm_max=hi, grad_norm_min=lo)
        if not all(math.isfinite(v) for v in norms) or hi > m.grad_norm_max:
            failures.append(f"gradient norm {hi:.3g} above {m.grad_norm_max:g}")
        elif lo < m.grad_norm_min:
            failures.append(f"gradient norm {lo:.3g} below {m.grad_norm_min:g} (seed not learning)")
    return _result(Gate.G1, failures, "isolated, loss falling, gradients in bounds", metrics)


def oscillation(values: Sequence[float]) -> float:
    """Excess variation per step: total variation minus the net change, over steps (0 if monotone)."""
    if len(values) < 3:
        return 0.0
    tv = sum(abs(b - a) for a, b in zip(values, values[1:], strict=False))
    return (tv - abs(values[-1] - values[0])) / (len(values) - 1)


def g2_stability(m: StabilityInputs) -> GateResult:
    failures: list[str] = []
    alphas = list(m.alphas)
    osc = oscillation(list(m.val_metrics))
    metrics = {"drift": float(m.drift), "oscillation": osc, "alpha": alphas[-1] if alphas else 0.0}
    if len(alphas) < 2:
        failures.append("alpha schedule not observed (need >= 2 samples)")
    else:
        if any(b < a for a, b in zip(alphas, alphas[1:], strict=False)):
            failures.append("alpha schedule went backwards")
        if not alphas[-1] > alphas[0]:
            failures.append("alpha schedule not advancing")
        if alphas[-1] < m.alpha_done:
            failures.append(f"alpha {alphas[-1]:.3f} < {m.alpha_done}")
    if not math.isfinite(m.drift) or m.drift > m.max_drift:
        failures.append(f"output drift {m.drift:.3g} > {m.max_drift:g}")
    if len(m.val_metrics) < 2:
        failures.append("validation metric not observed during blending")
    elif not all(math.isfinite(v) for v in m.val_metrics):
        failures.append("validation metric not finite")
    elif osc > m.max_oscillation:
        failures.append(f"validation metric oscillating ({osc:.3g} > {m.max_oscillation:g})")
    return _result(Gate.G2, failures, "alpha advanced, drift bounded, metric steady", metrics)


def g3_interface(m: InterfaceInputs) -> GateResult:
    failures: list[str] = []
    if tuple(m.got_shape) != tuple(m.expected_shape):
        failures.append(f"output shape {tuple(m.got_shape)} != {tuple(m.expected_shape)}")
    if m.got_dtype != m.expected_dtype:
        failures.append(f"output dtype {m.got_dtype} != {m.expected_dtype}")
    if not m.export_ok:
        failures.append(f"export failed: {m.export_error or 'unknown error'}")
    if m.telemetry_missing:
        failures.append(f"telemetry missing {', '.join(m.telemetry_missing)}")
    if not m.telemetry_finite:
        failures.append("telemetry not finite")
    return _result(Gate.G3, failures, "shapes, dtype, export and telemetry ok", {})


def g4_system_impact(m: SystemImpactInputs) -> GateResult:
    failures: list[str] = []
    gain = m.val_metric - m.baseline_metric
    metrics = {"val_metric": m.val_metric, "baseline_metric": m.baseline_metric, "gain": gain}
    if not (math.isfinite(m.val_metric) and math.isfinite(m.baseline_metric)):
        failures.append("metric not finite")
    if m.val_metric < m.baseline_metric - m.tolerance:
        failures.append(f"metric {m.val_metric:.4f} worse than baseline {m.baseline_metric:.4f} - {m.tolerance:g}")
    if m.global_metric is not None and m.global_reference is not None:
        metrics.update(global_metric=m.global_metric, global_reference=m.global_reference)
        if m.global_metric < m.global_reference - m.tolerance:
            failures.append(
                f"global metric {m.global_metric:.4f} worse than host {m.global_reference:.4f} - {m.tolerance:g}"
            )
    if gain < m.min_gain:
        failures.append(f"gain {gain:+.4f} < threshold {m.min_gain:g}")
    return _result(Gate.G4, failures, f"gain {gain:+.4f} within tolerance", metrics)


def g5_reset_sanity(m: ResetInputs) -> GateResult:
    failures: list[str] = []
    if not m.slot_empty or m.params_remaining:
        failures.append(f"slot not clean ({m.params_remaining} params remain)")
    if m.alpha != 0.0:
        failures.append(f"alpha {m.alpha} != 0")
    if not m.counters_clear:
        failures.append("counters not cleared")
    if not m.caches_clear:
        failures.append("caches not cleared")
    return _result(Gate.G5, failures, "slot clean", {"params_remaining": float(m.params_remaining)})


_GATES = {
    Gate.G0: (SanityInputs, g0_sanity),
    Gate.G1: (GradientHealthInputs, g1_gradient_health),
    Gate.G2: (StabilityInputs, g2_stability),
    Gate.G3: (InterfaceInputs, g3_interface),
    Gate.G4: (SystemImpactInputs, g4_system_impact),
    Gate.G5: (ResetInputs, g5_reset_sanity),
}


def evaluate_gate(gate: Gate | str, inputs: object | None) -> GateResult:
    """Run ``gate`` on ``inputs``; unknown gates, missing or mismatched measurements fail."""
    try:
        g = Gate(gate)
    except ValueError:
        return GateResult(Gate.G0, False, f"unknown gate {gate!r}")
    kind, fn = _GATES[g]
    if inputs is None:
        return GateResult(g, False, f"gate {g.value} ({g.title}) not evaluated: no measurements")
    if not isinstance(inputs, kind):
        return GateResult(
            g, False, f"gate {g.value} ({g.title}) got {type(inputs).__name__}, needs {kind.__name__}"
        )
    return fn(inputs)  # type: ignore[operator]
