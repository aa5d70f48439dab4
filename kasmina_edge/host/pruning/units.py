"""What pruning can remove in a model: its live seeds and, inside each, the hidden units of its blueprint.

Seeds live in two forms, both found here:

* **layer seeds**: seeds of a :class:`KasminaLayer` in a stage that changes the output (BLENDING to
  FOSSILIZED) — a chunk-bank row (a rank-r bottleneck on one chunk) or a module seed;
* **site seeds**: a fossilized blueprint module put in place of a site
  (:func:`kasmina_edge.host.conditions_morph.seeded_model`, :func:`build_seed_module`); recognised by the
  ``blueprint_name`` that :func:`create_blueprint` stamps on every blueprint it builds.

A **unit** is one hidden channel of a seed: rows ``j`` of the layers that produce the hidden activation
and column ``j`` of the layer that consumes it (a bottleneck's rank unit ``j``: row j of W_down, column j
of W_up). A unit whose weights are all exactly zero contributes nothing and counts as removed, so the
parameter count needs no side table of masks: it reads the weights.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from kasmina_edge.host.blueprints._parts import Bottleneck
from kasmina_edge.host.kasmina.layer import KasminaLayer
from kasmina_edge.host.kasmina.seed_state import OUTPUT_STAGES, module_key


@dataclass(frozen=True)
class GroupSpec:
    """One family of hidden units in a blueprint: producers (rows j) → hidden → consumer (column j)."""

    name: str
    producers: tuple[str, ...]  # submodule paths (Conv1d / Linear), output channel j is unit j
    consumer: str  # submodule path (Conv1d / Linear), input channel j is unit j
    shrinkable: bool  # the module still works with fewer hidden channels (plain, ungrouped layers)


# Blueprints whose hidden width a forward reads from a parameter elsewhere (top-k's k, the pruning
# adapter's masks, a depthwise conv's groups) are masked only, never shrunk.
_GROUPS: dict[str, tuple[GroupSpec, ...]] = {
    "bottleneck_adapter": (GroupSpec("block", ("block.down",), "block.up", True),),
    "low_rank_residual": (GroupSpec("v", ("v",), "u", True),),
    "residual_mlp": (GroupSpec("fc1", ("fc1",), "fc2", True),),
    "glu": (GroupSpec("hidden", ("value", "gate"), "out", True),),
    "denoising_autoencoder": (GroupSpec("enc", ("enc",), "dec", True),),
    "failsafe_gating": (GroupSpec("inner", ("inner.down",), "inner.up", True),),
    "squeeze_excitation": (GroupSpec("fc1", ("fc1",), "fc2", True),),
    "sparse_topk": (GroupSpec("block", ("block.down",), "block.up", False),),
    "pruning_adapter": (GroupSpec("block", ("block.down",), "block.up", False),),
    "depthwise_separable": (GroupSpec("dw", ("dw",), "pw", False),),
}
BANK_GROUP = "bank"  # a chunk-bank row: producer w_down[row][:, j], consumer w_up[row][j, :]


@dataclass(frozen=True)
class SeedRef:
    """Where one live seed sits. ``key`` names it in plans and reports."""

    path: str  # the KasminaLayer's module path (layer seeds) or the blueprint module's (site seeds)
    seed_id: str | None  # the layer's seed id; None for a site seed
    blueprint: str
    in_bank: bool = False
    row: int = -1  # the chunk-bank row (bank seeds)

    @property
    def key(self) -> str:
        return self.path if self.seed_id is None else f"{self.path}:{self.seed_id}"


@dataclass(frozen=True)
class Unit:
    """A removable thing: a whole seed (``group`` None) or hidden unit ``index`` of one of its groups."""

    seed: SeedRef
    group: str | None = None
    index: int = -1

    @property
    def key(self) -> str:
        return self.seed.key if self.group is None else f"{self.seed.key}#{self.group}[{self.index}]"

    @property
    def whole_seed(self) -> bool:
        return self.group is None


# --------------------------------------------------------------------------- finding seeds


def find_seeds(model: nn.Module) -> list[SeedRef]:
    """Every live seed of ``model``: layer seeds in an output stage, and blueprint modules at sites."""
    found: list[SeedRef] = []
    inside_layers: set[int] = set()
    for path, m in model.named_modules():
        if isinstance(m, KasminaLayer):
            inside_layers.update(id(sub) for sub in m.modules())
            for info in m.seeds():
                if info.stage in OUTPUT_STAGES:
                    found.append(SeedRef(path, info.seed_id, info.blueprint, info.in_bank, info.chunks[0]))
    for path, m in model.named_modules():
        if id(m) in inside_layers or not isinstance(getattr(m, "blueprint_name", None), str):
            continue
        if any(path.startswith(ref.path + ".") for ref in found if ref.seed_id is None):
            continue  # a blueprint inside another site seed belongs to it
        found.append(SeedRef(path, None, str(m.blueprint_name)))
    return found


def layer_of(model: nn.Module, ref: SeedRef) -> KasminaLayer:
    layer = model.get_submodule(ref.path)
    assert isinstance(layer, KasminaLayer), ref.path
    return layer


def seed_module(model: nn.Module, ref: SeedRef) -> nn.Module | None:
    """The module computing the seed (None for a chunk-bank row, which has none of its own)."""
    if ref.seed_id is None:
        return model.get_submodule(ref.path)
    if ref.in_bank:
        return None
    return layer_of(model, ref).seed_modules[module_key(ref.seed_id)]


def groups_of(module: nn.Module, blueprint: str) -> tuple[GroupSpec, ...]:
    """The blueprint's unit groups; for a blueprint not in the table, every :class:`Bottleneck` inside it
    (a nested seed's own adapter and its children's)."""
    if blueprint in _GROUPS:
        return _GROUPS[blueprint]
    return tuple(
        GroupSpec(name or "block", (f"{name}.down" if name else "down",), f"{name}.up" if name else "up", True)
        for name, sub in module.named_modules()
        if isinstance(sub, Bottleneck)
    )


def _layer(module: nn.Module, path: str) -> nn.Conv1d | nn.Linear:
    sub = module.get_submodule(path)
    assert isinstance(sub, nn.Conv1d | nn.Linear), f"{path}: {type(sub).__name__}"
    return sub


def group_width(module: nn.Module, spec: GroupSpec) -> int:
    return int(_layer(module, spec.consumer).weight.shape[1])


# --------------------------------------------------------------------------- unit weights


def unit_tensors(model: nn.Module, unit: Unit) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Views of the unit's weights: (what produces its activation, what carries it out)."""
    ref, j = unit.seed, unit.index
    if unit.group == BANK_GROUP:
        layer = layer_of(model, ref)
        return [layer.w_down[ref.row][:, j]], [layer.w_up[ref.row][j, :]]
    module = seed_module(model, ref)
    assert module is not None and unit.group is not None
    spec = next(s for s in groups_of(module, ref.blueprint) if s.name == unit.group)
    produced: list[torch.Tensor] = []
    for path in spec.producers:
        lay = _layer(module, path)
        produced.append(lay.weight[j])
        if lay.bias is not None:
            produced.append(lay.bias[j : j + 1])
    return produced, [_layer(module, spec.consumer).weight[:, j]]


def unit_params(model: nn.Module, unit: Unit) -> int:
    produced, carried = unit_tensors(model, unit)
    return sum(t.numel() for t in (*produced, *carried))


def unit_is_zero(model: nn.Module, unit: Unit) -> bool:
    produced, carried = unit_tensors(model, unit)
    return all(not bool(t.any()) for t in (*produced, *carried))


def seed_units(model: nn.Module, ref: SeedRef, *, include_zero: bool = False) -> list[Unit]:
    """The hidden units of one seed (none for blueprints without hidden channels), removed ones left out."""
    if ref.in_bank:
        units = [Unit(ref, BANK_GROUP, j) for j in range(layer_of(model, ref).rank)]
    else:
        module = seed_module(model, ref)
        assert module is not None
        units = [Unit(ref, s.name, j) for s in groups_of(module, ref.blueprint) for j in range(group_width(module, s))]
    return units if include_zero else [u for u in units if not unit_is_zero(model, u)]


def all_units(model: nn.Module) -> Iterator[Unit]:
    for ref in find_seeds(model):
        yield from seed_units(model, ref)


# --------------------------------------------------------------------------- parameter counts


def seed_params(model: nn.Module, ref: SeedRef) -> int:
    """The seed's parameters that still count: all of them, less those of its all-zero (removed) units."""
    if ref.in_bank:
        layer = layer_of(model, ref)
        total = 2 * layer.chunk_size * layer.rank
    else:
        module = seed_module(model, ref)
        assert module is not None
        total = sum(p.numel() for p in module.parameters())
    removed = sum(unit_params(model, u) for u in seed_units(model, ref, include_zero=True) if unit_is_zero(model, u))
    return total - removed


@dataclass(frozen=True)
class ParamCount:
    host: int  # every parameter outside seeds (a KasminaLayer's bank and module seeds are not the host's)
    seeds: int  # live seeds' parameters that still count (see :func:`seed_params`)

    @property
    def total(self) -> int:
        return self.host + self.seeds


def count_params(model: nn.Module) -> ParamCount:
    seeds = find_seeds(model)
    not_host: set[int] = set()
    for m in model.modules():
        if isinstance(m, KasminaLayer):
            not_host.update(id(p) for p in m.parameters())
    for ref in seeds:
        if ref.seed_id is None:
            not_host.update(id(p) for p in model.get_submodule(ref.path).parameters())
    host = sum(p.numel() for p in model.parameters() if id(p) not in not_host)
    return ParamCount(host, sum(seed_params(model, ref) for ref in seeds))
