"""Training a KasminaLayer's seeds: alpha while blending, learning-rate scale, epochs in stage, and the seed
backward watched for isolation (what G1 reads). A mixin of :class:`~kasmina_edge.host.kasmina.layer.KasminaLayer`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from kasmina_edge.contracts.lifecycle import Stage
from kasmina_edge.host.kasmina.grafting import GraftSignals
from kasmina_edge.host.kasmina.isolation import IsolationMonitor
from kasmina_edge.host.kasmina.seed_state import SeedError

if TYPE_CHECKING:
    from kasmina_edge.host.kasmina.layer import KasminaLayer


class SeedTraining:
    """The methods that train seeds; the state they touch is the layer's."""

    def set_alpha(self: KasminaLayer, seed_id: str, alpha: float) -> None:
        """Set a BLENDING seed's alpha directly (grafting strategies normally do it via ``step_alpha``)."""
        s = self._get(seed_id)
        if self.engine.stage(seed_id) is not Stage.BLENDING:
            raise SeedError(f"seed {seed_id}: alpha is set only while BLENDING (now {self.engine.stage(seed_id).name})")
        if not 0.0 <= alpha <= 1.0:
            raise SeedError(f"seed {seed_id}: alpha {alpha} outside [0, 1]")
        with torch.no_grad():
            self.alpha[s.start : s.stop] = alpha
        s.alpha_history.append(float(alpha))

    def record_val_metric(self: KasminaLayer, seed_id: str, metric: float) -> None:
        """A validation metric measured while the seed blends (G2 checks it does not oscillate)."""
        self._get(seed_id).val_history.append(float(metric))

    def step_alpha(self: KasminaLayer, seed_id: str, signals: GraftSignals | None = None) -> float:
        """One grafting step for a BLENDING seed (its strategy decides whether alpha advances)."""
        s = self._get(seed_id)
        if signals is None or signals.drift is None:
            drift = float(self.tel_drift[s.start : s.stop].max())
            base = signals or GraftSignals()
            signals = GraftSignals(base.val_metric, base.baseline_metric, drift, base.grad_norm)
        if signals.grad_norm is None and s.grad_norms:
            signals = GraftSignals(signals.val_metric, signals.baseline_metric, signals.drift, s.grad_norms[-1])
        alpha = s.grafting.step(signals)
        self.set_alpha(seed_id, alpha)
        if signals.val_metric is not None:
            s.val_history.append(float(signals.val_metric))
        return alpha

    def set_lr_scale(self: KasminaLayer, seed_id: str, scale: float) -> None:
        self._get(seed_id)
        self.registry.set_lr_scale(seed_id, scale)

    def end_epoch(self: KasminaLayer) -> None:
        """Count one more epoch in stage for every slot-holding seed (vectorised)."""
        with torch.no_grad():
            holding = (self.blueprint_id >= 0) & (self.stage != int(Stage.DORMANT))
            self.epochs_in_stage += holding.long()

    # -- training the seeds ------------------------------------------------------------------
    def seed_backward(self: KasminaLayer, loss: torch.Tensor) -> float:
        """Backward a loss on ``incubator_output()`` for this layer's TRAINING seeds, watched for
        isolation; records loss and gradient norms (G1's window). A tripped breaker culls the seed.
        """
        training = [self._seeds[s] for s in (*self._bank_training, *self._module_training)]
        host = self.registry.host_parameters()
        for s in training:
            if s.monitor is not None and not s.in_bank:
                s.monitor.rescan(self._own_params(s), host)
        # One watch on the host for the whole layer: a host gradient from this loss is a
        # violation of every seed that the loss trains.
        watch = IsolationMonitor([], host)
        with watch.seed_backward():
            loss.backward()
        for s in training:
            if s.monitor is not None:
                for reason in watch.reasons:
                    s.monitor.record(reason)
                s.monitor.host_grad_from_seed = max(s.monitor.host_grad_from_seed, watch.host_grad_from_seed)
        value = float(loss.detach())
        row_norms = None
        if self._bank_training:
            sq = torch.zeros(self.chunks)
            for p in (self.w_down, self.w_up):
                if p.grad is not None:
                    sq += p.grad.detach().pow(2).flatten(1).sum(1)
            row_norms = sq.sqrt().tolist()
        for s in training:
            s.seed_losses.append(value)
            if s.in_bank and row_norms is not None:
                s.grad_norms.append(row_norms[s.start])
            else:
                assert s.module is not None
                sq_m = [float(p.grad.pow(2).sum()) for p in s.module.parameters() if p.grad is not None]
                s.grad_norms.append(math.sqrt(sum(sq_m)))
            if s.monitor is not None and s.monitor.tripped and self.engine.stage(s.seed_id) is Stage.TRAINING:
                self.engine.cull(s.seed_id, "health_isolation_breaker: " + "; ".join(s.monitor.reasons[-1:]))
        return value
