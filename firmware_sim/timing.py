"""Emulated timing: what one window would take on the device, beside what it took on this host.

Every artifact's cost is read once at boot (``profiler.estimate``); per window the estimate is the sum
over the chain as configured then (segments, plus each slot's base and candidate kernels).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kasmina_edge.contracts.bundle import Bundle
from kasmina_edge.core.profiles import HardwareProfile
from kasmina_edge.profiler.estimate import (
    ArtifactCost,
    Estimate,
    artifact_cost,
    estimate_artifact,
    estimate_decision,
)
from kasmina_edge.runtime.executor import ChainConfig
from kasmina_edge.runtime.image import Image, artifact_bytes


@dataclass
class EmulatedTiming:
    profile: HardwareProfile
    costs: dict[str, ArtifactCost]
    estimates: dict[str, Estimate]
    segments: list[str]
    decision_s: float
    activation_s: dict[str, float] = field(default_factory=dict)  # decision + G0 check + swap, per kernel

    @classmethod
    def for_image(cls, image: Image, bundle: Bundle, profile: HardwareProfile) -> EmulatedTiming:
        site_len = {s.index: s.length for s in image.manifest.sites}
        costs: dict[str, ArtifactCost] = {}
        sources = [(e, bundle) for e in image.segment_entries]
        sources += [(k.entry, k.source or bundle) for k in image.kernels.values()]  # installed kernels: own bundle
        for entry, src in sources:
            data = artifact_bytes(src, entry)
            costs[entry.name] = artifact_cost(data, entry.format, entry.name, site_len.get(entry.site or 0, 64))
        resident = sum(c.weight_bytes for c in costs.values())
        estimates = {n: estimate_artifact(c, profile, resident_weight_bytes=resident) for n, c in costs.items()}
        base = estimate_decision(profile, None)
        activation = {k: estimate_decision(profile, costs[k]).total_s for k in image.kernels}
        return cls(profile, costs, estimates, [e.name for e in image.segment_entries], base.total_s, activation)

    def window_s(self, config: ChainConfig) -> float:
        """Estimated device time of one window under ``config``."""
        total = sum(self.estimates[n].total_s for n in self.segments)
        for slot in config.slots:
            if slot.base is not None:
                total += self.estimates[slot.base.name].total_s
            if slot.candidate is not None and (slot.alpha > 0.0 or slot.shadow):
                total += self.estimates[slot.candidate.name].total_s
        return total

