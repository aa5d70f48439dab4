"""Pruning seeds: utilization per seed and per hidden unit, three ranking strategies, and removal that is
kept only when a G4-style gate holds (otherwise rolled back, checked bit for bit)."""

from kasmina_edge.host.pruning.evaluation import Validation, quiet
from kasmina_edge.host.pruning.prune import (
    PruneGate,
    PruneRun,
    Reference,
    RollbackError,
    StepResult,
    TargetResult,
    judge,
    prune_schedule,
    same_weights,
    try_prune,
)
from kasmina_edge.host.pruning.strategies import (
    LEVELS,
    STRATEGIES,
    Candidate,
    Strategy,
    gain_per_parameter,
    get_strategy,
    magnitude,
    utilization,
)
from kasmina_edge.host.pruning.surgery import apply_plan, clone_model, compact, remove_seed, remove_units
from kasmina_edge.host.pruning.units import ParamCount, SeedRef, Unit, count_params, find_seeds, seed_units
from kasmina_edge.host.pruning.utilization import (
    SeedUtilization,
    UnitUtilization,
    seed_utilization,
    unit_utilization,
)

__all__ = [
    "LEVELS",
    "STRATEGIES",
    "Candidate",
    "ParamCount",
    "PruneGate",
    "PruneRun",
    "Reference",
    "RollbackError",
    "SeedRef",
    "SeedUtilization",
    "StepResult",
    "Strategy",
    "TargetResult",
    "Unit",
    "UnitUtilization",
    "Validation",
    "apply_plan",
    "clone_model",
    "compact",
    "count_params",
    "find_seeds",
    "gain_per_parameter",
    "get_strategy",
    "judge",
    "magnitude",
    "prune_schedule",
    "quiet",
    "remove_seed",
    "remove_units",
    "same_weights",
    "seed_units",
    "seed_utilization",
    "try_prune",
    "unit_utilization",
    "utilization",
]
