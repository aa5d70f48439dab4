"""Parameter registry: who owns which parameter, optimizer groups per seed, and an update guard.

Two kinds of ownership: a seed that runs through its own module owns whole parameters; a seed
in a layer's chunk bank owns one row (index along dim 0) of the bank's stacked parameters.
Host parameters are registered as frozen: during morphing no update may touch them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from kasmina_edge.contracts.errors import KasminaError

HOST = "host"


class UpdateRejected(KasminaError):
    """An optimizer update would touch a parameter its seed does not own (or the frozen host)."""


class SharedParameterError(KasminaError):
    """A parameter registered to two owners (seed/seed or seed/host)."""


def _storage_key(p: torch.Tensor) -> tuple[int, int, int]:
    """(storage pointer, first byte, last byte): two tensors overlap if they share storage bytes."""
    start = p.storage_offset() * p.element_size()
    size = p.numel() * p.element_size()
    return p.untyped_storage().data_ptr(), start, start + size


def overlapping(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a is b:
        return True
    pa, sa, ea = _storage_key(a)
    pb, sb, eb = _storage_key(b)
    return pa == pb and pa != 0 and sa < eb and sb < ea


@dataclass
class _Bank:
    params: tuple[nn.Parameter, ...]
    row_scale: torch.Tensor  # (S,) lr scale per row; the bank's owner scales each row's gradient by it
    rows: dict[str, int] = field(default_factory=dict)  # seed_id -> row
    owners: dict[int, str] = field(default_factory=dict)  # row -> seed_id


@dataclass
class _SeedEntry:
    params: list[nn.Parameter]
    lr_scale: float = 1.0
    bank: _Bank | None = None
    row: int = -1


class ParameterRegistry:
    def __init__(self) -> None:
        self._host: dict[int, tuple[str, nn.Parameter]] = {}
        self._seeds: dict[str, _SeedEntry] = {}
        self._banks: list[_Bank] = []

    # -- registration -----------------------------------------------------------------------
    def register_host(self, params: nn.Module | Iterable[nn.Parameter], *, prefix: str = "") -> None:
        """Mark the host's parameters frozen (a module gives named parameters for the messages)."""
        named = (
            params.named_parameters(prefix=prefix)
            if isinstance(params, nn.Module)
            else ((f"{prefix}{i}", p) for i, p in enumerate(params))
        )
        for name, p in named:
            if self._owner_by_identity(p) not in (None, HOST) or self._bank_of(p) is not None:
                continue  # a KasminaLayer's seed parameters live inside the host module: not host
            self._host[id(p)] = (name, p)

    def host_parameters(self) -> list[nn.Parameter]:
        return [p for _, p in self._host.values()]

    def register_bank(self, params: Iterable[nn.Parameter], row_scale: torch.Tensor) -> None:
        """A chunk bank: stacked parameters whose rows (dim 0) are owned by one seed each."""
        bank = _Bank(tuple(params), row_scale)
        for p in bank.params:
            self._host.pop(id(p), None)
        self._banks.append(bank)

    def _bank_of(self, p: torch.Tensor) -> _Bank | None:
        return next((b for b in self._banks if any(q is p for q in b.params)), None)

    def _owner_by_identity(self, p: torch.Tensor) -> str | None:
        if id(p) in self._host:
            return HOST
        for sid, e in self._seeds.items():
            if e.bank is None and any(q is p for q in e.params):
                return sid
        return None

    def owner_of(self, p: torch.Tensor) -> str | None:
        """'host', a seed id, or None (for a bank parameter: use ``row_owner``)."""
        for sid, e in self._seeds.items():
            if e.bank is None and any(overlapping(q, p) for q in e.params):
                return sid
        for _name, q in self._host.values():
            if overlapping(q, p):
                return HOST
        return None

    def register_seed(
        self, seed_id: str, params: Iterable[nn.Parameter], *, lr_scale: float = 1.0, strict: bool = True
    ) -> list[str]:
        """``seed_id`` owns ``params``. A parameter already owned by the host or another seed raises
        SharedParameterError, or with ``strict=False`` is left to its owner and reported (returned)."""
        plist, shared = [], []
        for p in params:
            owner = self.owner_of(p) or ("a chunk bank" if self._bank_of(p) is not None else None)
            if owner is not None and owner != seed_id:
                if strict:
                    raise SharedParameterError(
                        f"seed {seed_id}: a parameter {tuple(p.shape)} is already owned by {owner}"
                    )
                shared.append(owner)
                continue
            plist.append(p)
        self._seeds[seed_id] = _SeedEntry(plist, lr_scale)
        return shared

    def register_seed_row(self, seed_id: str, bank_param: nn.Parameter, row: int, *, lr_scale: float = 1.0) -> None:
        bank = self._bank_of(bank_param)
        if bank is None:
            raise SharedParameterError(f"seed {seed_id}: parameter is not a registered chunk bank")
        holder = bank.owners.get(row)
        if holder is not None and holder != seed_id:
            raise SharedParameterError(f"seed {seed_id}: bank row {row} already owned by {holder}")
        bank.rows[seed_id] = row
        bank.owners[row] = seed_id
        self._seeds[seed_id] = _SeedEntry(list(bank.params), lr_scale, bank, row)
        bank.row_scale[row] = lr_scale

    def release(self, seed_id: str) -> None:
        entry = self._seeds.pop(seed_id, None)
        if entry is not None and entry.bank is not None:
            entry.bank.rows.pop(seed_id, None)
            entry.bank.owners.pop(entry.row, None)
            entry.bank.row_scale[entry.row] = 1.0

    def seed_ids(self) -> list[str]:
        return list(self._seeds)

    def seed_parameters(self, seed_id: str) -> list[nn.Parameter]:
        """The seed's own parameters (for a bank seed: the bank tensors, of which it owns one row)."""
        return list(self._seeds[seed_id].params) if seed_id in self._seeds else []

    def owned_numel(self, seed_id: str) -> int:
        e = self._seeds.get(seed_id)
        if e is None:
            return 0
        if e.bank is not None:
            return sum(p[e.row].numel() for p in e.params)
        return sum(p.numel() for p in e.params)

    # -- optimizer --------------------------------------------------------------------------
    def set_lr_scale(self, seed_id: str, scale: float) -> None:
        """Tamiyo's intensity: scales this seed's learning rate (bank rows: scales its gradient)."""
        e = self._seeds[seed_id]
        e.lr_scale = float(scale)
        if e.bank is not None:
            e.bank.row_scale[e.row] = float(scale)

    def optimizer_param_groups(self, base_lr: float, seed_ids: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """One group per module seed (lr = base_lr · scale); one per chunk bank (scale per row via
        its gradient hook, exact for SGD, and weight_decay 0 so idle rows never move)."""
        wanted = set(self._seeds) if seed_ids is None else set(seed_ids)
        groups: list[dict[str, Any]] = []
        banks: dict[int, dict[str, Any]] = {}
        for sid, e in self._seeds.items():
            if sid not in wanted:
                continue
            if e.bank is None:
                groups.append({"params": e.params, "lr": base_lr * e.lr_scale, "seed_id": sid, "lr_scale": e.lr_scale})
            else:
                g = banks.setdefault(
                    id(e.bank), {"params": list(e.bank.params), "lr": base_lr, "weight_decay": 0.0, "seed_ids": []}
                )
                g["seed_ids"].append(sid)
        return groups + list(banks.values())

    # -- the guard --------------------------------------------------------------------------
    def check_update(self, active: Iterable[str] | None = None, params: Iterable[torch.Tensor] | None = None) -> None:
        """Raise UpdateRejected if any gradient would update a parameter that no active seed owns.

        Checked: the frozen host, seeds not in ``active`` (default: every registered seed), bank
        rows not owned by an active seed, and (with ``params``, e.g. an optimizer's) unregistered ones.
        """
        act = set(self._seeds) if active is None else set(active)
        for name, p in self._host.values():
            if p.grad is not None and bool(p.grad.ne(0).any()):
                raise UpdateRejected(f"update rejected: frozen host parameter {name!r} has a gradient")
        for sid, e in self._seeds.items():
            if e.bank is None and sid not in act:
                for p in e.params:
                    if p.grad is not None and bool(p.grad.ne(0).any()):
                        raise UpdateRejected(f"update rejected: seed {sid} is not being trained but has a gradient")
        for bank in self._banks:
            allowed = torch.zeros(bank.row_scale.shape[0], dtype=torch.bool, device=bank.row_scale.device)
            rows = [row for sid, row in bank.rows.items() if sid in act]
            if rows:
                allowed[torch.tensor(rows, dtype=torch.long)] = True
            for p in bank.params:
                if p.grad is None:
                    continue
                bad = p.grad.ne(0).flatten(1).any(dim=1) & ~allowed
                if bool(bad.any()):
                    row = int(bad.nonzero()[0, 0])
                    owner = bank.owners.get(row, "nobody")
                    raise UpdateRejected(f"update rejected: chunk-bank row {row} (owner {owner}) has a gradient")
        if params is not None:
            known = {id(p) for p in self.host_parameters()} | {id(p) for e in self._seeds.values() for p in e.params}
            known |= {id(p) for b in self._banks for p in b.params}
            for p in params:
                if id(p) not in known and p.grad is not None and bool(p.grad.ne(0).any()):
                    raise UpdateRejected(f"update rejected: unregistered parameter {tuple(p.shape)} has a gradient")

    def guard(
        self, optimizer: torch.optim.Optimizer, active: Callable[[], Iterable[str]] | None = None
    ) -> torch.utils.hooks.RemovableHandle:
        """Run ``check_update`` before every ``optimizer.step()``; returns the hook handle."""

        def pre_step(opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
            ps = [p for g in opt.param_groups for p in g["params"]]
            self.check_update(active() if active is not None else None, ps)

        return optimizer.register_step_pre_hook(pre_step)
