"""How much each seed and each hidden unit is used, measured on data with forward hooks.

Per seed (the seed taken out of a copy, the same data run through both):

* ``share``: the part of its site's output change it carries, Σ|y − y₋ₛ| / Σ|y − x| (x, y: the site's
  input and output with every seed, y₋ₛ: the output without seed s); 1 for a site's only seed;
* ``rel_delta``: how far it moves the site relative to the host's own activation, Σ|y − y₋ₛ| / Σ|x|;
  comparable across sites, which is why strategies rank seeds by it;
* ``decision_change``: the fraction of samples whose predicted class changes without it.

Per hidden unit: mean |activation| × ‖outgoing weights‖₂ (the consumer's column): an upper bound of the
unit's contribution at each position, and zero for a unit that never fires (a dead ReLU) or whose output
path is zero. The activation is read by a forward pre-hook on the consumer layer (its input *is* the
hidden activation); a chunk-bank row has no layer of its own, so its activation is recomputed from the
KasminaLayer's input (a pre-hook there) and the row's W_down.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from kasmina_edge.contracts.lifecycle import Stage
from kasmina_edge.host.kasmina.layer import KasminaLayer
from kasmina_edge.host.pruning.evaluation import Validation, quiet
from kasmina_edge.host.pruning.surgery import apply_plan
from kasmina_edge.host.pruning.units import (
    BANK_GROUP,
    SeedRef,
    Unit,
    find_seeds,
    groups_of,
    layer_of,
    seed_module,
    seed_params,
    seed_units,
)


@dataclass(frozen=True)
class SeedUtilization:
    key: str
    blueprint: str
    params: int
    share: float
    rel_delta: float
    decision_change: float

    def to_dict(self) -> dict[str, Any]:
        return {k: round(v, 6) if isinstance(v, float) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class UnitUtilization:
    key: str
    activation: float  # mean |hidden activation|
    out_norm: float  # L2 norm of the weights that carry it out

    @property
    def score(self) -> float:
        return self.activation * self.out_norm


def _site_path(ref: SeedRef) -> str:
    return ref.path  # a layer seed's site is its KasminaLayer; a site seed is the site module itself


def _site_io(model: nn.Module, path: str, val: Validation) -> tuple[torch.Tensor, torch.Tensor]:
    """The site's input and output over the whole validation set."""
    xs: list[torch.Tensor] = []
    ys: list[torch.Tensor] = []

    def hook(_m: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        xs.append(inp[0].detach().clone())
        ys.append(out.detach().clone())

    handle = model.get_submodule(path).register_forward_hook(hook)
    try:
        with quiet(model):
            for batch in val.batches():
                model(*batch)
    finally:
        handle.remove()
    return torch.cat(xs), torch.cat(ys)


def seed_utilization(model: nn.Module, val: Validation) -> list[SeedUtilization]:
    """Every live seed's share of its site's change, relative change, and decision changes."""
    pred = val.predict(model)
    io: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    out: list[SeedUtilization] = []
    for ref in find_seeds(model):
        path = _site_path(ref)
        if path not in io:
            io[path] = _site_io(model, path, val)
        x, y = io[path]
        without = apply_plan(model, [Unit(ref)])
        _, y_without = _site_io(without, path, val)
        moved = float((y - y_without).abs().sum())
        total = float((y - x).abs().sum())
        out.append(SeedUtilization(
            key=ref.key, blueprint=ref.blueprint, params=seed_params(model, ref),
            share=moved / total if total > 0 else 0.0,
            rel_delta=moved / max(float(x.abs().sum()), 1e-12),
            decision_change=float(np.mean(val.predict(without) != pred)),
        ))  # fmt: skip
    return out


# --------------------------------------------------------------------------- units


class _Accumulator:
    """Σ|activation| per hidden channel and the number of values summed."""

    def __init__(self) -> None:
        self.total: torch.Tensor | None = None
        self.count = 0

    def add(self, act: torch.Tensor, channel_dim: int) -> None:
        dims = [d for d in range(act.dim()) if d != channel_dim]
        s = act.detach().abs().sum(dim=dims).double()
        self.total = s if self.total is None else self.total + s
        self.count += act.numel() // act.shape[channel_dim]

    def mean(self) -> torch.Tensor:
        assert self.total is not None and self.count > 0, "no activation seen (was the seed run?)"
        return self.total / self.count


def _consumer_hook(acc: _Accumulator) -> Callable[..., None]:
    def hook(_m: nn.Module, inp: tuple[torch.Tensor, ...]) -> None:
        acc.add(inp[0], 1)  # (B, H, L) for a Conv1d, (B, H) for a Linear: channels on dim 1 either way

    return hook


def _bank_hook(ref: SeedRef, acc: _Accumulator, layer: KasminaLayer) -> Callable[..., None]:
    def hook(_m: nn.Module, inp: tuple[torch.Tensor, ...]) -> None:
        x = inp[0]
        c = layer.chunk_size
        chunk = x[:, ref.row * c : (ref.row + 1) * c, :].permute(0, 2, 1)  # (B, L, c)
        acc.add(torch.relu(chunk @ layer.w_down[ref.row]), 2)  # (B, L, r)

    return hook


def unit_utilization(model: nn.Module, val: Validation) -> list[UnitUtilization]:
    """Mean |activation| × outgoing weight norm of every (not yet removed) hidden unit of every live seed."""
    plan: list[tuple[SeedRef, str, _Accumulator, torch.Tensor]] = []  # (seed, group, activations, out norms)
    handles = []
    try:
        for ref in find_seeds(model):
            if not seed_units(model, ref):
                continue
            acc = _Accumulator()
            if ref.in_bank:
                layer = layer_of(model, ref)
                info = layer.seed(ref.seed_id or "")
                alpha = info.alpha if info.stage is Stage.BLENDING else 1.0
                norms = alpha * layer.w_up[ref.row].detach().norm(dim=1)  # (r,)
                handles.append(layer.register_forward_pre_hook(_bank_hook(ref, acc, layer)))
                plan.append((ref, BANK_GROUP, acc, norms))
                continue
            module = seed_module(model, ref)
            assert module is not None
            for spec in groups_of(module, ref.blueprint):
                group_acc = _Accumulator()
                consumer = module.get_submodule(spec.consumer)
                norms = consumer.weight.detach().norm(dim=[d for d in range(consumer.weight.dim()) if d != 1])  # type: ignore[union-attr,operator]
                handles.append(consumer.register_forward_pre_hook(_consumer_hook(group_acc)))
                plan.append((ref, spec.name, group_acc, norms))
        with quiet(model):
            for batch in val.batches():
                model(*batch)
    finally:
        for h in handles:
            h.remove()
    alive = {u.key for u in _live_units(model)}
    out: list[UnitUtilization] = []
    for ref, group, acc, norms in plan:
        act = acc.mean()
        for j in range(int(norms.shape[0])):
            key = Unit(ref, group, j).key
            if key in alive:
                out.append(UnitUtilization(key, float(act[j]), float(norms[j])))
    return out


def _live_units(model: nn.Module) -> list[Unit]:
    return [u for ref in find_seeds(model) for u in seed_units(model, ref)]
