"""Reading a KasminaLayer's seeds out: the snapshot of one seed, its seed-library record and weights, and a
standalone module computing it. A mixin of :class:`~kasmina_edge.host.kasmina.layer.KasminaLayer`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from kasmina_edge.contracts.lifecycle import Stage
from kasmina_edge.host.blueprints import create_blueprint, get_blueprint
from kasmina_edge.host.kasmina.seed_state import SeedError, SeedInfo, SeedSlot

if TYPE_CHECKING:
    from kasmina_edge.host.kasmina.layer import KasminaLayer


class SeedRecords:
    """The read-side of a layer's seeds; the state they read is the layer's."""

    def seeds(self: KasminaLayer) -> Iterator[SeedInfo]:
        """Every seed that holds a slot in this layer (not DORMANT-after-reset or TERMINATED)."""
        for sid in list(self._seeds):
            yield self.seed(sid)

    def seed(self: KasminaLayer, seed_id: str) -> SeedInfo:
        s = self._get(seed_id)
        a, b = self._channel_range(s)
        return SeedInfo(
            seed_id=seed_id,
            site=self.site,
            chunks=(s.start, s.stop),
            channels=(a, b),
            blueprint=s.blueprint,
            params=dict(s.params),
            stage=self.engine.stage(seed_id),
            alpha=float(self.alpha[s.start]),
            epochs_in_stage=int(self.epochs_in_stage[s.start]),
            grafting=s.grafting.name,
            param_count=self.registry.owned_numel(seed_id),
            in_bank=s.in_bank,
            isolation_violations=s.monitor.violations if s.monitor else 0,
        )

    def _get(self: KasminaLayer, seed_id: str) -> SeedSlot:
        try:
            return self._seeds[seed_id]
        except KeyError:
            raise SeedError(f"site {self.site}: no seed {seed_id!r} holds a slot here") from None

    def seed_record(self: KasminaLayer, seed_id: str) -> dict[str, Any]:
        """JSON-ready description of a seed for a seed library: blueprint, site, chunks, params,
        stage, alpha, parameter count, MACs, histories and its whole lifecycle (events)."""
        s = self._get(seed_id)
        info = self.seed(seed_id)
        spec = get_blueprint(s.blueprint)
        channels = info.channels[1] - info.channels[0]
        return {
            "seed_id": seed_id,
            "site": self.site,
            "blueprint": s.blueprint,
            "blueprint_id": spec.blueprint_id,
            "params": dict(s.params),
            "chunks": list(info.chunks),
            "channels": list(info.channels),
            "in_bank": s.in_bank,
            "stage": info.stage.name,
            "alpha": info.alpha,
            "param_count": info.param_count,
            "macs": spec.macs(channels, self.length or 1, **s.params),
            "ops": list(spec.ops),
            "targets": sorted(spec.targets),
            "grafting": s.grafting.name,
            "baseline_metric": s.baseline_metric,
            "seed_losses": list(s.seed_losses),
            "alpha_history": list(s.alpha_history),
            "isolation_violations": info.isolation_violations,
            "history": [e.to_json() for e in self.engine.lifecycle(seed_id).history],
        }

    def seed_state_dict(self: KasminaLayer, seed_id: str) -> dict[str, torch.Tensor]:
        """The seed's weights as a standalone module's state dict (``seed_module(seed_id)``)."""
        return {k: v.detach().clone() for k, v in self.seed_module(seed_id).state_dict().items()}

    def stage_of(self: KasminaLayer, seed_id: str) -> Stage:
        return self.engine.stage(seed_id)

    def seed_parameters(self: KasminaLayer, seed_id: str) -> list[nn.Parameter]:
        """Parameters owned by the seed (a bank seed owns one row of ``w_down``/``w_up``: those are returned)."""
        self._get(seed_id)
        return self.registry.seed_parameters(seed_id)

    def seed_module(self: KasminaLayer, seed_id: str) -> nn.Module:
        """A standalone module computing the seed on its channels (bank seeds: a bottleneck adapter copy)."""
        s = self._get(seed_id)
        if s.module is not None:
            return s.module
        m = create_blueprint("bottleneck_adapter", self.chunk_size, self.length, rank=self.rank)
        with torch.no_grad():
            m.block.down.weight.copy_(self.w_down[s.start].T.unsqueeze(-1))  # type: ignore[union-attr]
            m.block.up.weight.copy_(self.w_up[s.start].T.unsqueeze(-1))  # type: ignore[union-attr]
        return m
