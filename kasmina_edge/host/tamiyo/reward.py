"""Tamiyo's multi-objective reward: accuracy gain against what the seed costs and risks.

    r = w_acc · gain_points − w_params · params/base_params − w_latency · macs/base_macs
        − w_drift · drift − w_safety · violations

``gain_points`` is the macro-F1 gain in points (0–100) over the pre-germination baseline;
cost terms are fractions of the base model; ``drift`` is the output drift the seed caused
on clean data; a violation is acting against a mask (security alert, target, budget).
Waiting earns 0, so acting pays only when its gain beats its cost.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class RewardWeights:
    accuracy: float = 0.1  # per macro-F1 point
    params: float = 1.0  # per base model's worth of parameters
    latency: float = 1.0  # per base model's worth of MACs
    drift: float = 0.5
    safety: float = 5.0

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def parse(cls, text: str) -> RewardWeights:
        """``"accuracy=0.2,params=2"`` → weights (the rest default)."""
        from kasmina_edge.contracts.errors import KasminaError

        kw: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, _, value = (x.strip() for x in part.partition("="))
            if key not in cls.__dataclass_fields__:
                raise KasminaError(f"reward weights: unknown term {key!r} (known: {', '.join(cls.__dataclass_fields__)})")
            try:
                kw[key] = float(value)
            except ValueError:
                raise KasminaError(f"reward weights: {key}={value!r} is not a number") from None
        return cls(**kw)


@dataclass(frozen=True)
class Outcome:
    """What one germination achieved (measured by morph) and cost."""

    gain: float  # macro-F1 gain, fraction (0.05 = 5 points)
    params: int
    macs: int
    drift: float = 0.0
    violations: int = 0


def reward(outcome: Outcome, base_params: int, base_macs: int, w: RewardWeights | None = None) -> float:
    w = w or RewardWeights()
    return (
        w.accuracy * 100.0 * outcome.gain
        - w.params * outcome.params / max(1, base_params)
        - w.latency * outcome.macs / max(1, base_macs)
        - w.drift * outcome.drift
        - w.safety * outcome.violations
    )
