"""Removal that is tested before it is kept: one step on a copy, judged by a G4-style gate, else rolled back.

The gate is G4 (system impact) with the unpruned model as the baseline: the pruned model's validation
metric may not fall below the unpruned one's by more than ``tolerance`` (and, with ``bootstrap``, the lower
quantile of the paired bootstrap's gain, :func:`kasmina_edge.host.evidence.paired_bootstrap`, may not
either). The baseline is always the *unpruned* model, never the previous step: a run of small losses,
each within tolerance of the one before, must not add up to a large one.

A refused step leaves the model as it was: the step ran on a copy, and the original's parameters and
buffers are compared bit for bit with a snapshot taken before the step (``rollback_exact``).

:func:`prune_schedule` prunes in steps of ``step_fraction`` of the seeds' parameters, re-ranking after
every kept step (utilization and gains change as units go), through each target fraction in turn; a
refused step is rolled back and retried with half as many candidates, and a single candidate that is
refused is kept for good (it is not offered again).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.contracts.lifecycle import Gate, GateResult
from kasmina_edge.host.evidence import paired_bootstrap
from kasmina_edge.host.kasmina.gates import SystemImpactInputs, g4_system_impact
from kasmina_edge.host.kasmina.isolation import bit_equal
from kasmina_edge.host.pruning.evaluation import Validation
from kasmina_edge.host.pruning.strategies import Candidate, Strategy
from kasmina_edge.host.pruning.surgery import adopt_sinks, apply_plan
from kasmina_edge.host.pruning.units import count_params


class RollbackError(RuntimeError):
    """A refused step changed the original model: a bug, never a user's doing."""


@dataclass(frozen=True)
class PruneGate:
    tolerance: float = 0.01  # how much of the metric pruning may cost, against the unpruned model
    bootstrap: bool = False  # also require the paired bootstrap's lower gain quantile >= -tolerance
    bootstrap_rounds: int = 400
    bootstrap_quantile: float = 0.1

    def __post_init__(self) -> None:
        if not 0.0 <= self.tolerance < 1.0:
            raise KasminaError(f"pruning tolerance must be in [0, 1), got {self.tolerance}")


@dataclass(frozen=True)
class Reference:
    """The unpruned model on the validation set: what every step is judged against."""

    metric: float
    pred: np.ndarray

    @classmethod
    def of(cls, model: nn.Module, val: Validation) -> Reference:
        pred = val.predict(model)
        return cls(val.score(pred), pred)


@dataclass
class StepResult:
    removed: list[str]
    accepted: bool
    params_before: int  # seed parameters before the step
    params_after: int  # ... after it, had it been kept
    metric: float  # the candidate's validation metric
    reference: float
    gate: dict[str, Any]
    rollback_exact: bool | None = None  # refused steps: the original is bit for bit what it was

    def to_dict(self) -> dict[str, Any]:
        return {k: round(v, 6) if isinstance(v, float) else v for k, v in self.__dict__.items()}


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same_weights(model: nn.Module, snapshot: dict[str, torch.Tensor]) -> bool:
    """Every parameter and buffer equal to ``snapshot`` bit for bit (and no key added or lost)."""
    now = model.state_dict()
    # reshape(-1): bit_equal views as bytes, which a 0-d tensor (a step counter) does not allow
    return now.keys() == snapshot.keys() and all(
        now[k].shape == snapshot[k].shape and bit_equal(now[k].detach().reshape(-1), snapshot[k].reshape(-1))
        for k in now
    )


def judge(candidate: nn.Module, val: Validation, ref: Reference, gate: PruneGate) -> tuple[float, GateResult]:
    """G4 with the unpruned model as baseline (plus the paired bootstrap where asked)."""
    pred = val.predict(candidate)
    metric = val.score(pred)
    result = g4_system_impact(SystemImpactInputs(
        val_metric=metric, baseline_metric=ref.metric, tolerance=gate.tolerance, min_gain=-gate.tolerance,
    ))  # fmt: skip
    if not gate.bootstrap or not result.passed:
        return metric, result
    ev = paired_bootstrap(val.labels.numpy(), ref.pred, pred, rounds=gate.bootstrap_rounds,
                          quantile=gate.bootstrap_quantile, n_classes=val.n_classes)  # fmt: skip
    metrics = {**result.metrics, "bootstrap_gain_low": ev.gain_low}
    if ev.gain_low < -gate.tolerance:
        return metric, GateResult(Gate.G4, False, f"bootstrap gain q{ev.quantile:g} {ev.gain_low:+.4f} "
                                  f"< -{gate.tolerance:g}", metrics)  # fmt: skip
    return metric, GateResult(Gate.G4, True, result.reason + f"; bootstrap q{ev.quantile:g} {ev.gain_low:+.4f}", metrics)


def try_prune(
    model: nn.Module, plan: Sequence[Candidate], val: Validation, gate: PruneGate, ref: Reference | None = None,
) -> tuple[nn.Module, StepResult]:  # fmt: skip
    """Remove ``plan`` on a copy; return the copy if the gate holds, else ``model`` itself, unchanged."""
    ref = ref or Reference.of(model, val)
    snapshot = _snapshot(model)
    before = count_params(model).seeds
    candidate = apply_plan(model, [c.unit for c in plan], reason="pruned")
    metric, result = judge(candidate, val, ref, gate)
    step = StepResult(
        removed=[c.key for c in plan], accepted=result.passed, params_before=before,
        params_after=count_params(candidate).seeds, metric=metric, reference=ref.metric,
        gate={"gate": result.gate.value, "passed": result.passed, "reason": result.reason,
              "metrics": {k: round(float(v), 6) for k, v in result.metrics.items()}},
    )  # fmt: skip
    if result.passed:
        adopt_sinks(model, candidate)
        return candidate, step
    step.rollback_exact = same_weights(model, snapshot)
    if not step.rollback_exact:
        raise RollbackError("a refused pruning step changed the original model's weights")
    return model, step


# --------------------------------------------------------------------------- schedules


@dataclass
class TargetResult:
    target: float  # fraction of the seeds' parameters asked for
    reached: bool
    saved_fraction: float  # of the seeds' parameters
    seed_params: int
    total_params: int
    metric: float
    model: nn.Module = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "model"}
        return {k: round(v, 6) if isinstance(v, float) else v for k, v in d.items()}


@dataclass
class PruneRun:
    strategy: str
    level: str
    reference: float
    seed_params: int  # before pruning
    total_params: int
    targets: list[TargetResult] = field(default_factory=list)
    steps: list[StepResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rollbacks(self) -> int:
        return sum(1 for s in self.steps if not s.accepted)

    def to_dict(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy, "level": self.level, "reference": round(self.reference, 6),
            "seed_params": self.seed_params, "total_params": self.total_params, "rollbacks": self.rollbacks,
            "seconds": round(self.seconds, 2), "targets": [t.to_dict() for t in self.targets],
            "steps": [s.to_dict() for s in self.steps],
        }  # fmt: skip


def _take(plan: Sequence[Candidate], budget: int) -> list[Candidate]:
    """Candidates from the top of the plan until ``budget`` parameters are covered (at least one)."""
    out: list[Candidate] = []
    total = 0
    for c in plan:
        if out and total >= budget:
            break
        out.append(c)
        total += c.params
    return out


def prune_schedule(
    model: nn.Module, strategy: Strategy, val: Validation, targets: Sequence[float], *,
    level: str = "unit", gate: PruneGate | None = None, step_fraction: float = 0.125, name: str = "",
    patience: int = 12,
) -> PruneRun:  # fmt: skip
    """Prune ``model``'s seeds through each of ``targets`` (fractions of their parameters, ascending).

    ``patience``: after this many single candidates refused in a row the run stops (the gate's tolerance
    is spent: what is left each costs more than it may); the remaining targets are reported not reached.
    """
    if not targets or any(not 0.0 < t <= 1.0 for t in targets) or list(targets) != sorted(targets):
        raise KasminaError(f"pruning targets must be ascending fractions in (0, 1], got {list(targets)}")
    if not 0.0 < step_fraction <= 1.0:
        raise KasminaError(f"pruning step fraction must be in (0, 1], got {step_fraction}")
    gate = gate or PruneGate()
    t0 = time.perf_counter()
    ref = Reference.of(model, val)
    start = count_params(model)
    if start.seeds == 0:
        raise KasminaError("pruning: the model has no live seed to prune")
    run = PruneRun(name or getattr(strategy, "__name__", "strategy"), level, ref.metric, start.seeds, start.total)
    step_params = max(1, int(round(step_fraction * start.seeds)))
    current, refused, in_a_row = model, set[str](), 0
    for target in targets:
        goal = int(np.ceil(target * start.seeds))
        while start.seeds - count_params(current).seeds < goal and in_a_row < patience:
            plan = [c for c in strategy(current, val, level) if c.key not in refused]
            if not plan:
                break
            remaining = goal - (start.seeds - count_params(current).seeds)
            batch = _take(plan, min(step_params, remaining))
            while True:
                current, step = try_prune(current, batch, val, gate, ref)
                run.steps.append(step)
                if step.accepted:
                    in_a_row = 0
                    break
                if len(batch) == 1:
                    refused.add(batch[0].key)
                    in_a_row += 1
                    break
                batch = batch[: len(batch) // 2]
        now = count_params(current)
        saved = start.seeds - now.seeds
        run.targets.append(TargetResult(
            target=target, reached=saved >= goal, saved_fraction=saved / start.seeds, seed_params=now.seeds,
            total_params=now.total, metric=val.evaluate(current), model=current,
        ))  # fmt: skip
    run.seconds = time.perf_counter() - t0
    return run
