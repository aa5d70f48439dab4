"""A profile's efficiency fitted to published latencies, and the leave-one-model-out check of the fit.

The roofline (:mod:`kasmina_edge.profiler.latency`) divides each op's operations by the profile's peak times its
``efficiency``; every other term (memory traffic, dispatch) is stated on its own. ``fit_efficiency`` finds the
efficiency at which the median of estimate / published over a set of models is 1 (the estimate falls as the
efficiency rises, so a bisection on its logarithm finds it); ``leave_one_out`` fits on all models but one and
judges the fit on the one left out, for each in turn: what the profile would say of a model nobody measured.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from kasmina_edge.core.profiles import HardwareProfile
from kasmina_edge.profiler.graph import GraphProfile
from kasmina_edge.profiler.latency import estimate_graph

EFFICIENCY_RANGE = (1e-4, 1.0)  # the profile schema's bound above; far below anything real


@dataclass(frozen=True)
class Published:
    """One published latency: a model's graph on a board (the profile it is estimated with) and its seconds."""

    model: str
    graph: GraphProfile
    profile: HardwareProfile
    seconds: float


def with_efficiency(profile: HardwareProfile, efficiency: float) -> HardwareProfile:
    return profile.model_copy(update={"efficiency": float(efficiency)})


def ratios(points: Sequence[Published], efficiency: float) -> list[float]:
    """estimate / published for each point at ``efficiency``."""
    return [estimate_graph(p.graph, with_efficiency(p.profile, efficiency)).total_s / p.seconds for p in points]


def fit_efficiency(points: Sequence[Published], *, iterations: int = 60) -> float:
    """The efficiency whose median estimate / published is 1 (clamped to EFFICIENCY_RANGE: where even the
    ends do not reach 1, memory or dispatch terms dominate and the end nearest is returned)."""
    if not points:
        raise ValueError("no published points to fit")
    lo, hi = (math.log(v) for v in EFFICIENCY_RANGE)

    def median_at(log_e: float) -> float:
        return statistics.median(ratios(points, math.exp(log_e)))

    if median_at(hi) >= 1.0:  # even at efficiency 1 the estimate is slower than published
        return EFFICIENCY_RANGE[1]
    if median_at(lo) <= 1.0:
        return EFFICIENCY_RANGE[0]
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        if median_at(mid) > 1.0:  # estimate too slow: more efficiency
            lo = mid
        else:
            hi = mid
    return math.exp(0.5 * (lo + hi))


@dataclass(frozen=True)
class HeldOut:
    model: str
    efficiency: float  # fitted on the other models
    ratio: float  # estimate / published for the model left out


@dataclass(frozen=True)
class Calibration:
    """One submission (board and runtime): the fit on every model and the leave-one-model-out check."""

    name: str
    efficiency: float
    before: dict[str, float]  # model -> estimate / published with the profile's own efficiency
    after: dict[str, float]  # model -> estimate / published at the fitted efficiency (in-sample)
    held_out: list[HeldOut]

    @property
    def held_out_median(self) -> float:
        return statistics.median(h.ratio for h in self.held_out) if self.held_out else float("nan")

    def within(self, low: float = 0.67, high: float = 1.5) -> bool:
        return low <= self.held_out_median <= high

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "held_out_median": self.held_out_median, "within_0.67_1.5": self.within()}


def leave_one_out(points: Sequence[Published]) -> list[HeldOut]:
    out = []
    for i, p in enumerate(points):
        rest = [q for j, q in enumerate(points) if j != i]
        if not rest:
            continue
        e = fit_efficiency(rest)
        out.append(HeldOut(p.model, e, ratios([p], e)[0]))
    return out


def calibrate(name: str, points: Sequence[Published]) -> Calibration:
    e = fit_efficiency(points)
    before = {p.model: r for p, r in zip(points, _own_ratios(points), strict=True)}
    after = {p.model: r for p, r in zip(points, ratios(points, e), strict=True)}
    return Calibration(name, e, before, after, leave_one_out(points))


def _own_ratios(points: Sequence[Published]) -> list[float]:
    return [estimate_graph(p.graph, p.profile).total_s / p.seconds for p in points]


def transfer(efficiency: float, ratio: Callable[[], float] | float) -> float:
    """An efficiency carried to another runtime on the same core by the ratio of their speeds (published on
    one board); clamped to the schema's range."""
    r = ratio() if callable(ratio) else ratio
    return min(EFFICIENCY_RANGE[1], max(EFFICIENCY_RANGE[0], efficiency * r))
