"""A seed's bookkeeping in a KasminaLayer: what the layer keeps per seed, the snapshot it hands out, its errors.

Also the stage sets the forward reads (which stages change the output, which hold a slot) and the kernel code
each stage maps to in the chunk bank.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.contracts.lifecycle import Stage
from kasmina_edge.host.kasmina.grafting import GraftingStrategy
from kasmina_edge.host.kasmina.isolation import IsolationMonitor
from kasmina_edge.host.kernels.reference import BLENDING_CODE, DORMANT_CODE, FOSSILIZED_CODE


class SeedError(KasminaError):
    """A seed request the layer cannot honour (bad chunk, slot taken, unknown seed)."""


class GerminationRejected(KasminaError):
    """G0 refused the germination; the message carries the gate's reason."""


# Stages whose seeds change the layer's output, and the kernel code each maps to.
OUTPUT_STAGES = frozenset({Stage.BLENDING, Stage.SHADOWING, Stage.PROBATIONARY, Stage.FOSSILIZED})
# Stages in which a seed holds its slot (its chunks cannot be germinated by another seed).
SLOT_STAGES = frozenset(
    {Stage.GERMINATED, Stage.TRAINING, *OUTPUT_STAGES, Stage.CULLED, Stage.EMBARGOED, Stage.RESETTING}
)
KERNEL_CODE = [DORMANT_CODE] * len(Stage)
for _s in (Stage.BLENDING, Stage.SHADOWING, Stage.PROBATIONARY):
    KERNEL_CODE[_s] = BLENDING_CODE
KERNEL_CODE[Stage.FOSSILIZED] = FOSSILIZED_CODE


@dataclass
class SeedSlot:
    """Host-side bookkeeping of one seed (never touched by the forward for bank seeds)."""

    seed_id: str
    start: int  # first chunk
    stop: int  # one past the last chunk
    blueprint: str
    params: dict[str, Any]
    in_bank: bool
    module: nn.Module | None
    grafting: GraftingStrategy
    monitor: IsolationMonitor | None = None
    seed_losses: list[float] = field(default_factory=list)
    grad_norms: list[float] = field(default_factory=list)
    alpha_history: list[float] = field(default_factory=list)
    val_history: list[float] = field(default_factory=list)
    baseline_metric: float | None = None


@dataclass(frozen=True)
class SeedInfo:
    """A snapshot of one seed's state (``KasminaLayer.seed``)."""

    seed_id: str
    site: int
    chunks: tuple[int, int]
    channels: tuple[int, int]
    blueprint: str
    params: dict[str, Any]
    stage: Stage
    alpha: float
    epochs_in_stage: int
    grafting: str
    param_count: int
    in_bank: bool
    isolation_violations: int


def module_key(seed_id: str) -> str:
    """The seed's key in the layer's ModuleDict (a seed id holds '/' and '#', which ModuleDict refuses)."""
    return re.sub(r"[^0-9A-Za-z_]", "_", seed_id)
