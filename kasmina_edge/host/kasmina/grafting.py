"""Grafting: how a seed's alpha ramps from 0 to 1 during BLENDING.

A strategy owns a step counter and a curve (linear, cosine, sigmoid) mapping progress in [0, 1]
to alpha in [0, 1] with exact endpoints. Strategies differ in *when* they take the next step:
always (fixed ramp), while the validation metric keeps up (performance-linked), while the
output drift stays bounded (drift-controlled), or while gradients are calm (grad-norm-gated).
Alpha never goes backwards: a strategy that is not satisfied holds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from kasmina_edge.contracts.errors import KasminaError


class GraftingError(KasminaError):
    """An unknown grafting strategy or curve, or a bad parameter."""


def linear(t: float) -> float:
    return min(1.0, max(0.0, t))


def cosine(t: float) -> float:
    t = linear(t)
    if t in (0.0, 1.0):
        return t
    return 0.5 - 0.5 * math.cos(math.pi * t)


def sigmoid(t: float, steepness: float = 10.0) -> float:
    """Logistic curve rescaled so sigmoid(0) == 0 and sigmoid(1) == 1 exactly."""
    t = linear(t)
    if t in (0.0, 1.0):
        return t

    def s(u: float) -> float:
        return 1.0 / (1.0 + math.exp(-steepness * (u - 0.5)))

    return (s(t) - s(0.0)) / (s(1.0) - s(0.0))


CURVES: dict[str, Callable[[float], float]] = {"linear": linear, "cosine": cosine, "sigmoid": sigmoid}


@dataclass(frozen=True)
class GraftSignals:
    """What a strategy may look at before stepping; a missing signal makes it hold."""

    val_metric: float | None = None
    baseline_metric: float | None = None
    drift: float | None = None
    grad_norm: float | None = None


@dataclass
class GraftingStrategy:
    """Base: ``steps`` steps along ``curve``. Subclasses decide whether each step may be taken."""

    steps: int = 10
    curve: str = "linear"
    progress: int = 0

    name: ClassVar[str] = "base"
    strategy_id: ClassVar[int] = -1

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise GraftingError(f"grafting {self.name}: steps must be >= 1, got {self.steps}")
        if self.curve not in CURVES:
            raise GraftingError(f"grafting {self.name}: unknown curve {self.curve!r}; known: {', '.join(CURVES)}")

    @property
    def alpha(self) -> float:
        return CURVES[self.curve](self.progress / self.steps)

    @property
    def done(self) -> bool:
        return self.progress >= self.steps

    def may_advance(self, signals: GraftSignals) -> bool:
        return True

    def step(self, signals: GraftSignals | None = None) -> float:
        """Take one step if allowed; returns alpha (never lower than before)."""
        if not self.done and self.may_advance(signals or GraftSignals()):
            self.progress += 1
        return self.alpha

    def reset(self) -> None:
        self.progress = 0


@dataclass
class FixedRamp(GraftingStrategy):
    name: ClassVar[str] = "fixed_ramp"
    strategy_id: ClassVar[int] = 0


@dataclass
class PerformanceLinked(GraftingStrategy):
    """Steps while the validation metric is no worse than the baseline minus ``tolerance``."""

    tolerance: float = 0.01
    name: ClassVar[str] = "performance_linked"
    strategy_id: ClassVar[int] = 1

    def may_advance(self, signals: GraftSignals) -> bool:
        if signals.val_metric is None or signals.baseline_metric is None:
            return False
        return signals.val_metric >= signals.baseline_metric - self.tolerance


@dataclass
class DriftControlled(GraftingStrategy):
    """Steps while the output drift (telemetry, in reference standard deviations) is within bound."""

    max_drift: float = 1.0
    name: ClassVar[str] = "drift_controlled"
    strategy_id: ClassVar[int] = 2

    def may_advance(self, signals: GraftSignals) -> bool:
        return signals.drift is not None and math.isfinite(signals.drift) and signals.drift <= self.max_drift


@dataclass
class GradNormGated(GraftingStrategy):
    """Steps while the seed's gradient norm is finite and at most ``max_grad_norm``."""

    max_grad_norm: float = 1.0
    name: ClassVar[str] = "grad_norm_gated"
    strategy_id: ClassVar[int] = 3

    def may_advance(self, signals: GraftSignals) -> bool:
        g = signals.grad_norm
        return g is not None and math.isfinite(g) and g <= self.max_grad_norm


GRAFTING_STRATEGIES: dict[str, type[GraftingStrategy]] = {
    cls.name: cls for cls in (FixedRamp, PerformanceLinked, DriftControlled, GradNormGated)
}
GRAFTING_BY_ID: dict[int, str] = {cls.strategy_id: name for name, cls in GRAFTING_STRATEGIES.items()}


def make_grafting(name: str, **params: Any) -> GraftingStrategy:
    try:
        cls = GRAFTING_STRATEGIES[name]
    except KeyError:
        raise GraftingError(
            f"unknown grafting strategy {name!r}; known: {', '.join(GRAFTING_STRATEGIES)}"
        ) from None
    try:
        return cls(**params)
    except TypeError as exc:
        raise GraftingError(f"grafting {name}: {exc}") from None
