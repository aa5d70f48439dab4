"""Three ways to rank what to remove first; each returns a plan, the least useful candidate first.

* ``magnitude`` (no data): a unit's ‖producer rows‖₂ · ‖consumer column‖₂ — the product, because a ReLU
  unit can move weight between its two sides (W_down·a, W_up/a) without changing what it computes, and the
  product does not move; a seed: the sum of its units' products (‖parameters‖₂ where it has no units).
* ``utilization`` (data, hooks): a unit's mean |activation| × outgoing norm; a seed: how far it moves its
  site relative to the host's activation (``rel_delta``), then how many decisions it changes.
* ``gain_per_parameter`` (data, one ablation per candidate): the validation metric lost when the
  candidate alone is removed, divided by its parameters; ties (a metric on a few hundred samples often
  does not move) are broken by the rise of the true class's negative log-likelihood, per parameter.

``level``: ``unit`` ranks hidden units (seeds without hidden units are not candidates), ``seed`` ranks
whole seeds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.host.pruning.evaluation import Validation
from kasmina_edge.host.pruning.surgery import apply_plan, units_masked
from kasmina_edge.host.pruning.units import (
    Unit,
    find_seeds,
    seed_module,
    seed_params,
    seed_units,
    unit_params,
    unit_tensors,
)
from kasmina_edge.host.pruning.utilization import seed_utilization, unit_utilization

LEVELS = ("unit", "seed")


@dataclass(frozen=True)
class Candidate:
    unit: Unit
    score: float  # lower: removed earlier
    params: int  # parameters it frees
    tie: float = 0.0  # second key, lower first

    @property
    def key(self) -> str:
        return self.unit.key


Strategy = Callable[[nn.Module, Validation, str], list[Candidate]]


def _ranked(cands: list[Candidate]) -> list[Candidate]:
    return sorted(cands, key=lambda c: (c.score, c.tie, -c.params, c.key))


def candidates(model: nn.Module, level: str) -> list[Unit]:
    if level not in LEVELS:
        raise KasminaError(f"pruning level {level!r}: choose one of {', '.join(LEVELS)}")
    refs = find_seeds(model)
    if level == "seed":
        return [Unit(r) for r in refs]
    return [u for r in refs for u in seed_units(model, r)]


def _unit_magnitude(model: nn.Module, unit: Unit) -> float:
    produced, carried = unit_tensors(model, unit)
    p = torch.cat([t.detach().reshape(-1) for t in produced]).norm()
    c = torch.cat([t.detach().reshape(-1) for t in carried]).norm()
    return float(p * c)


def _params_of(model: nn.Module, unit: Unit) -> int:
    return seed_params(model, unit.seed) if unit.whole_seed else unit_params(model, unit)


def magnitude(model: nn.Module, val: Validation | None = None, level: str = "unit") -> list[Candidate]:
    out = []
    for u in candidates(model, level):
        if u.whole_seed:
            units = seed_units(model, u.seed)
            if units:
                score = sum(_unit_magnitude(model, v) for v in units)
            else:
                module = seed_module(model, u.seed)
                assert module is not None  # a bank seed always has units
                score = float(torch.cat([p.detach().reshape(-1) for p in module.parameters()] or [torch.zeros(1)]).norm())
        else:
            score = _unit_magnitude(model, u)
        out.append(Candidate(u, score, _params_of(model, u)))
    return _ranked(out)


def utilization(model: nn.Module, val: Validation, level: str = "unit") -> list[Candidate]:
    units = candidates(model, level)
    if level == "seed":
        by_key = {s.key: s for s in seed_utilization(model, val)}
        return _ranked([
            Candidate(u, by_key[u.key].rel_delta, _params_of(model, u), tie=by_key[u.key].decision_change)
            for u in units
        ])  # fmt: skip
    scores = {s.key: s.score for s in unit_utilization(model, val)}
    return _ranked([Candidate(u, scores[u.key], _params_of(model, u)) for u in units])


def _without(model: nn.Module, val: Validation, unit: Unit) -> tuple[float, float]:
    """(metric, nll) with ``unit`` ablated: a hidden unit masked in place (and restored), a seed on a copy."""
    if unit.whole_seed:
        return val.measure(apply_plan(model, [unit]))
    with units_masked(model, [unit]):
        return val.measure(model)


def gain_per_parameter(model: nn.Module, val: Validation, level: str = "unit") -> list[Candidate]:
    base_metric, base_nll = val.measure(model)
    out = []
    for u in candidates(model, level):
        params = max(1, _params_of(model, u))
        metric, nll = _without(model, val, u)
        out.append(Candidate(u, (base_metric - metric) / params, params, tie=(nll - base_nll) / params))
    return _ranked(out)


STRATEGIES: dict[str, Strategy] = {
    "magnitude": magnitude,
    "utilization": utilization,
    "gain_per_parameter": gain_per_parameter,
}


def get_strategy(name: str) -> Strategy:
    if name not in STRATEGIES:
        raise KasminaError(f"pruning strategy {name!r}: choose one of {', '.join(STRATEGIES)}")
    return STRATEGIES[name]
