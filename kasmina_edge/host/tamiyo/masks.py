"""Tamiyo's action space and its safety and hardware masks.

A mask says which choices are allowed *before* the controller picks: a blueprint the target
cannot run, or one over the per-seed parameter or MAC (latency) budget, is never chosen; a
site that already holds a live seed is not offered again; a security alert allows only No-Op.
Both the heuristic and the policy network decide through the same masks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

INTENSITY_LEVELS: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)  # multipliers of the seed's base learning rate
WAIT, ACT = 0, 1


@dataclass(frozen=True)
class ActionSpace:
    """The fixed vocabulary of the policy's heads (order matters for an exported policy)."""

    sites: tuple[str, ...]
    blueprints: tuple[str, ...]
    graftings: tuple[str, ...]
    intensities: tuple[float, ...] = INTENSITY_LEVELS

    def to_dict(self) -> dict[str, list[str] | list[float]]:
        return {
            "sites": list(self.sites),
            "blueprints": list(self.blueprints),
            "graftings": list(self.graftings),
            "intensities": list(self.intensities),
        }



@dataclass(frozen=True)
class BlueprintCost:
    """What one blueprint costs at one site, and which targets can run it."""

    params: int
    macs: int
    targets: frozenset[str]


CostTable = Mapping[tuple[str, str], BlueprintCost]  # (site, blueprint) -> cost


@dataclass(frozen=True)
class Budget:
    """The deployment's limits for one seed: target, parameters and MACs per beat."""

    target: str | None = None  # None: host only, any blueprint runs
    max_params: int = 10**9
    max_macs: int = 10**12


@dataclass(frozen=True)
class Masks:
    act: np.ndarray  # (2,) bool: [wait allowed, act allowed]
    location: np.ndarray  # (n_sites,) bool
    blueprint: np.ndarray  # (n_sites, n_blueprints) bool

    def any_action(self) -> bool:
        return bool(self.act[ACT] and (self.location[:, None] & self.blueprint).any())


def blueprint_mask(space: ActionSpace, costs: CostTable, budget: Budget) -> np.ndarray:
    """(n_sites, n_blueprints): allowed where the target runs it and it fits the budget."""
    out = np.zeros((len(space.sites), len(space.blueprints)), dtype=bool)
    for i, site in enumerate(space.sites):
        for j, bp in enumerate(space.blueprints):
            cost = costs.get((site, bp))
            if cost is None:
                continue  # unknown cost: never allowed
            if budget.target is not None and budget.target not in cost.targets:
                continue
            out[i, j] = cost.params <= budget.max_params and cost.macs <= budget.max_macs
    return out


def build_masks(
    space: ActionSpace,
    costs: CostTable,
    budget: Budget,
    *,
    security_alert: bool = False,
    busy_sites: Iterable[str] = (),
) -> Masks:
    busy = set(busy_sites)
    location = np.array([s not in busy for s in space.sites], dtype=bool)
    bp = blueprint_mask(space, costs, budget)
    location &= bp.any(axis=1)
    can_act = not security_alert and bool(location.any())
    act = np.array([True, can_act], dtype=bool)
    return Masks(act=act, location=location, blueprint=bp)


# Blueprints Tamiyo may choose from (the registry has more: No-Op is "wait", nested and
# quant/pruning adapters are build-time variants of the ones here).
CANDIDATE_BLUEPRINTS: tuple[str, ...] = (
    "bottleneck_adapter",
    "low_rank_residual",
    "residual_mlp",
    "latent_align",
    "depthwise_separable",
    "sliding_conv",
    "denoising_autoencoder",
    "squeeze_excitation",
    "glu",
    "attention_filter",
    "mini_attention",
    "sparse_topk",
)
GRAFTINGS: tuple[str, ...] = ("fixed_ramp", "performance_linked", "drift_controlled", "grad_norm_gated")


def costs_from_registry(
    site_shapes: Mapping[str, tuple[int, int]], blueprints: Iterable[str] = CANDIDATE_BLUEPRINTS
) -> dict[tuple[str, str], BlueprintCost]:
    """Parameter and MAC formulas and target support of each blueprint at each site (no instantiation)."""
    from kasmina_edge.host.blueprints import TARGETS, get_blueprint, is_registered

    out: dict[tuple[str, str], BlueprintCost] = {}
    for bp in blueprints:
        if not is_registered(bp):
            continue
        spec = get_blueprint(bp)
        for site, (channels, length) in site_shapes.items():
            out[(site, bp)] = BlueprintCost(
                params=spec.param_count(channels),
                macs=spec.macs(channels, length),
                targets=frozenset(t for t in TARGETS if spec.supports(t, channels)),
            )
    return out


def default_space(sites: Iterable[str]) -> ActionSpace:
    from kasmina_edge.host.blueprints import is_registered

    return ActionSpace(
        sites=tuple(sites),
        blueprints=tuple(b for b in CANDIDATE_BLUEPRINTS if is_registered(b)),
        graftings=GRAFTINGS,
    )
