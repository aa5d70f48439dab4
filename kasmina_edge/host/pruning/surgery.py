"""Removing units and seeds: on a copy of the model, masked (zeroed) or physically shrunk.

* a hidden unit is **masked**: its producer rows and consumer column are set to exactly zero, so it adds
  nothing and counts as removed (:func:`units.count_params`); indices of the other units stay put, which is
  what iterative pruning needs (a plan names units by index);
* :func:`compact` then **shrinks** every blueprint whose layers allow it: the all-zero units leave the
  weight tensors (a rank-4 bottleneck with two units masked becomes a rank-2 one). Chunk-bank rows cannot
  shrink (the bank's rank is the layer's), so theirs stay masked;
* a whole seed is **removed**: a layer seed is moved to TERMINATED through its lifecycle (reason
  ``pruned``; the layer clears its slot and frees its parameters), a site seed is replaced by identity.

:func:`clone_model` makes the copy a removal is tried on. A deep copy of a KasminaLayer is not enough by
itself: its lifecycle engine's event sinks would be shared (a refused candidate's TERMINATED would reach
the original's dashboard) and the engine's reset callbacks are closures over the *original* layer.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from kasmina_edge.host.kasmina.layer import KasminaLayer
from kasmina_edge.host.kasmina.lifecycle_engine import LifecycleEngine
from kasmina_edge.host.pruning.units import (
    BANK_GROUP,
    GroupSpec,
    SeedRef,
    Unit,
    find_seeds,
    groups_of,
    layer_of,
    seed_module,
    seed_units,
    unit_is_zero,
    unit_tensors,
)


def _engines(model: nn.Module) -> dict[str, LifecycleEngine]:
    return {path: m.engine for path, m in model.named_modules() if isinstance(m, KasminaLayer)}


def clone_model(model: nn.Module) -> nn.Module:
    """A deep copy whose lifecycle engines report to no one and whose layers reset their own slots."""
    # The sink lists are swapped for empty ones in the copy (pre-seeded deepcopy memo): a candidate's events
    # stay in its engine's ``events`` until :func:`adopt_sinks` hands them on, if it is kept.
    memo: dict[int, object] = {id(e._sinks): [] for e in _engines(model).values()}  # noqa: SLF001
    twin = copy.deepcopy(model, memo)
    for m in twin.modules():
        if isinstance(m, KasminaLayer):
            for sid in list(m._seeds):  # noqa: SLF001 - the layer registers its reset as a closure over itself
                m.engine.register(sid, on_reset=functools.partial(m._clear_slot, sid))  # noqa: SLF001
    return twin


def adopt_sinks(original: nn.Module, kept: nn.Module) -> None:
    """The kept copy takes over the original's event sinks and sends them what happened on the copy."""
    old, new = _engines(original), _engines(kept)
    for path, engine in new.items():
        if path not in old or engine is old[path]:
            continue
        sinks = old[path]._sinks  # noqa: SLF001
        for event in engine.events[len(old[path].events) :]:
            for sink in sinks:
                sink(event)
        engine._sinks = sinks  # noqa: SLF001


# --------------------------------------------------------------------------- removal


def _set_submodule(root: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, name = path.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    setattr(parent, name, module)


def remove_seed(model: nn.Module, ref: SeedRef, reason: str = "pruned") -> None:
    """Take a whole seed out of ``model`` (in place)."""
    if ref.seed_id is not None:
        layer_of(model, ref).terminate(ref.seed_id, reason=reason)
    elif ref.path:
        _set_submodule(model, ref.path, nn.Identity())
    else:
        raise ValueError("the model itself is a seed: nothing to put in its place")


@torch.no_grad()
def mask_unit(model: nn.Module, unit: Unit) -> None:
    produced, carried = unit_tensors(model, unit)
    for t in (*produced, *carried):
        t.zero_()


@contextmanager
def units_masked(model: nn.Module, units: Sequence[Unit]) -> Iterator[nn.Module]:
    """``model`` itself with ``units`` (hidden units, not whole seeds) zeroed for the block, then every
    zeroed weight copied back exactly: an ablation without copying the model."""
    saved: list[tuple[torch.Tensor, torch.Tensor]] = []
    with torch.no_grad():
        for u in units:
            if u.whole_seed:
                raise ValueError(f"{u.key}: a whole seed is removed on a copy (apply_plan), not masked in place")
            produced, carried = unit_tensors(model, u)
            for t in (*produced, *carried):
                saved.append((t, t.clone()))
                t.zero_()
    try:
        yield model
    finally:
        with torch.no_grad():
            for t, value in reversed(saved):
                t.copy_(value)


def remove_units(model: nn.Module, units: Sequence[Unit], reason: str = "pruned") -> None:
    """Mask the hidden units and remove the whole seeds of ``units`` (in place). A seed left with no unit
    at all goes whole: what remains of it is a bias at most."""
    whole = {u.seed.key for u in units if u.whole_seed}
    for u in units:
        if not u.whole_seed and u.seed.key not in whole:
            mask_unit(model, u)
    refs = {r.key: r for r in find_seeds(model)}
    for u in units:
        live = not u.whole_seed and u.seed.key not in whole and u.seed.key in refs
        if live and not seed_units(model, refs[u.seed.key]):
            whole.add(u.seed.key)
    for key in whole:
        if key in refs:
            remove_seed(model, refs[key], reason)


# --------------------------------------------------------------------------- compaction


def _resized(layer: nn.Conv1d | nn.Linear, keep: torch.Tensor, *, as_input: bool) -> nn.Module:
    """``layer`` keeping output channels ``keep`` (producers) or input channels ``keep`` (consumers)."""
    w = layer.weight.detach()
    w = w[:, keep] if as_input else w[keep]
    new = copy.deepcopy(layer)  # kernel size, stride, padding, dtype and device as they were
    new.weight = nn.Parameter(w.clone(), requires_grad=layer.weight.requires_grad)
    if layer.bias is not None and not as_input:
        new.bias = nn.Parameter(layer.bias.detach()[keep].clone(), requires_grad=layer.bias.requires_grad)
    if isinstance(new, nn.Conv1d):
        new.out_channels, new.in_channels = int(w.shape[0]), int(w.shape[1])
    else:
        new.out_features, new.in_features = int(w.shape[0]), int(w.shape[1])
    return new


def _shrink_group(module: nn.Module, spec: GroupSpec, keep: torch.Tensor) -> None:
    for path in spec.producers:
        layer = module.get_submodule(path)
        assert isinstance(layer, nn.Conv1d | nn.Linear) and getattr(layer, "groups", 1) == 1
        _set_submodule(module, path, _resized(layer, keep, as_input=False))
    consumer = module.get_submodule(spec.consumer)
    assert isinstance(consumer, nn.Conv1d | nn.Linear)
    _set_submodule(module, spec.consumer, _resized(consumer, keep, as_input=True))


def compact(model: nn.Module) -> int:
    """Physically drop every all-zero unit of every shrinkable blueprint (in place); returns how many.

    A group whose units are all zero keeps one (a layer of width 0 is not a layer); bank rows stay masked.
    """
    dropped = 0
    for ref in find_seeds(model):
        module = seed_module(model, ref)
        if module is None:
            continue
        changed = False
        for spec in groups_of(module, ref.blueprint):
            if not spec.shrinkable or spec.name == BANK_GROUP:
                continue
            width = int(module.get_submodule(spec.consumer).weight.shape[1])  # type: ignore[index]
            zero = [unit_is_zero(model, Unit(ref, spec.name, j)) for j in range(width)]
            keep = [j for j in range(width) if not zero[j]] or [0]
            if len(keep) < width:
                _shrink_group(module, spec, torch.tensor(keep, dtype=torch.long))
                dropped += width - len(keep)
                changed = True
        if changed and ref.seed_id is not None:
            # The layer's registry owns the seed's parameter objects: the shrunk ones replace them.
            layer = layer_of(model, ref)
            layer.registry.release(ref.seed_id)
            layer.registry.register_seed(ref.seed_id, module.parameters(), strict=False)
    return dropped


def apply_plan(model: nn.Module, units: Sequence[Unit], *, shrink: bool = False, reason: str = "pruned") -> nn.Module:
    """A copy of ``model`` with ``units`` removed (masked; shrunk too where ``shrink``); ``model`` is untouched."""
    twin = clone_model(model)
    remove_units(twin, units, reason)
    if shrink:
        compact(twin)
    return twin
