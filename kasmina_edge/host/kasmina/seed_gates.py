"""What a KasminaLayer measures for the lifecycle gates (G1 gradient health, G2 stability, G3 interface, G4
system impact) and its moves through the engine. A mixin of :class:`~kasmina_edge.host.kasmina.layer.KasminaLayer`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from kasmina_edge.contracts.lifecycle import Stage, TransitionEvent
from kasmina_edge.host.kasmina.gates import (
    GradientHealthInputs,
    InterfaceInputs,
    StabilityInputs,
    SystemImpactInputs,
)
from kasmina_edge.host.kasmina.seed_state import SeedError
from kasmina_edge.host.kasmina.telemetry import TELEMETRY_KEYS

if TYPE_CHECKING:
    from kasmina_edge.host.kasmina.layer import KasminaLayer


class SeedGates:
    """The gate measurements and lifecycle moves; the state they read is the layer's."""

    def gradient_health_inputs(self: KasminaLayer, seed_id: str, **bounds: Any) -> GradientHealthInputs:
        s = self._get(seed_id)
        m = s.monitor
        return GradientHealthInputs(
            isolation_violations=m.violations if m else 0,
            breaker_tripped=m.tripped if m else False,
            seed_losses=tuple(s.seed_losses),
            grad_norms=tuple(s.grad_norms),
            **bounds,
        )

    def stability_inputs(self: KasminaLayer, seed_id: str, **bounds: Any) -> StabilityInputs:
        s = self._get(seed_id)
        return StabilityInputs(
            alphas=tuple(s.alpha_history),
            drift=float(self.tel_drift[s.start : s.stop].max()),
            val_metrics=tuple(s.val_history),
            **bounds,
        )

    def interface_inputs(self: KasminaLayer, seed_id: str, probe: torch.Tensor | None = None) -> InterfaceInputs:
        """Run the seed alone on a probe, torch.export it, and check telemetry is present and finite."""
        s = self._get(seed_id)
        a, b = self._channel_range(s)
        if probe is None:
            probe = torch.randn(2, b - a, self.length or 32, generator=torch.Generator().manual_seed(0))
        module = self.seed_module(seed_id)
        was_training = module.training
        module.eval()
        try:
            with torch.no_grad():
                y = module(probe)
            try:
                torch.export.export(module, (probe,))
                export_ok, err = True, ""
            except Exception as exc:  # noqa: BLE001 - any export failure is the gate's finding
                export_ok, err = False, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        finally:
            module.train(was_training)
        tel = self.telemetry()
        missing = tuple(k for k in TELEMETRY_KEYS if k not in tel)
        finite = all(bool(torch.isfinite(v[s.start : s.stop]).all()) for v in tel.values())
        return InterfaceInputs(
            expected_shape=tuple(probe.shape),
            got_shape=tuple(y.shape),
            expected_dtype=str(probe.dtype),
            got_dtype=str(y.dtype),
            export_ok=export_ok,
            export_error=err,
            telemetry_missing=missing,
            telemetry_finite=finite and int(self.tel_batches) > 0,
        )

    def system_impact_inputs(self: KasminaLayer, seed_id: str, val_metric: float, **kw: Any) -> SystemImpactInputs:
        s = self._get(seed_id)
        baseline = kw.pop("baseline_metric", s.baseline_metric)
        if baseline is None:
            raise SeedError(f"seed {seed_id}: no pre-germination baseline recorded (set_baseline)")
        return SystemImpactInputs(val_metric=val_metric, baseline_metric=baseline, **kw)

    def set_baseline(self: KasminaLayer, seed_id: str, metric: float) -> None:
        """The validation metric before germination (G4 measures the gain against it)."""
        self._get(seed_id).baseline_metric = float(metric)

    def advance(self: KasminaLayer, seed_id: str, measurements: object | None = None) -> TransitionEvent:
        """One step forward through the engine; measurements default to what this layer measures
        itself (G1 gradient health, G2 stability, G3 interface). G4 needs ``system_impact_inputs``."""
        stage = self.engine.stage(seed_id)
        if measurements is None:
            if stage is Stage.TRAINING:
                measurements = self.gradient_health_inputs(seed_id)
            elif stage is Stage.BLENDING:
                measurements = self.stability_inputs(seed_id)
            elif stage is Stage.SHADOWING:
                measurements = self.interface_inputs(seed_id)
        return self.engine.try_advance(seed_id, measurements)

    def cull(self: KasminaLayer, seed_id: str, reason: str) -> TransitionEvent:
        self._get(seed_id)
        return self.engine.cull(seed_id, reason)

    def reset_seed(self: KasminaLayer, seed_id: str, reason: str = "reset_requested") -> TransitionEvent | None:
        """Retire a seed: cull it (-> EMBARGOED); its slot returns via ``engine.tick()`` after the embargo."""
        stage = self.engine.stage(seed_id)
        if stage in (Stage.CULLED, Stage.EMBARGOED, Stage.RESETTING, Stage.DORMANT, Stage.TERMINATED):
            return None
        return self.cull(seed_id, reason)

    def terminate(self: KasminaLayer, seed_id: str, reason: str = "administrative teardown") -> TransitionEvent:
        return self.engine.terminate(seed_id, reason)
