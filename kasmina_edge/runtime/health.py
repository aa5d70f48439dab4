"""Health of the live seed kernels, and the circuit breakers that take a faulty one out.

After every window the monitor looks at each slot whose candidate kernel is live:

* ``health_nan``        the kernel's output (or the logits) held NaN/inf (the executor already fell
                        back to the base path for that window);
* ``health_latency``    the kernel's invoke took longer than its budget for ``latency_strikes``
                        windows in a row (one slow window on a shared CPU is not a fault);
* ``health_confidence`` the mean top-class probability over the last windows collapsed: below an
                        absolute floor, or far below what it was before the kernel went live;
* ``health_drift``      the kernel moved its site's activation by many times its own size, or the
                        site's drift against the reference statistics exploded.

A fault (:class:`kasmina_edge.contracts.events.Fault`) opens the kernel's breaker; the lifecycle then rolls the slot back to its base (previous
kernel or identity) before the next window and culls the kernel with the fault's code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from kasmina_edge.contracts.events import Fault
from kasmina_edge.runtime.executor import ChainConfig, WindowResult


@dataclass(frozen=True)
class HealthLimits:
    latency_floor_s: float = 2e-3  # no kernel budget below this on the host (scheduler noise)
    latency_factor: float = 20.0  # budget = max(floor, factor x the kernel's median invoke at boot)
    latency_strikes: int = 3
    confidence_windows: int = 8
    confidence_floor: float = 0.3  # 5 classes: 0.2 is a uniform guess
    confidence_drop: float = 0.35  # below the pre-activation confidence by this much
    max_relative_change: float = 8.0  # |k(h) - h| / |h|
    max_drift: float = 50.0  # site drift in reference standard deviations


@dataclass
class CircuitBreaker:
    """Closed: the kernel may run. Open: it is out of the chain until its lifecycle resets it (G5)."""

    kernel: str
    state: Literal["closed", "open"] = "closed"
    trips: int = 0
    last_fault: Fault | None = None
    opened_at: int | None = None  # window index

    @property
    def is_open(self) -> bool:
        return self.state == "open"

    def open(self, fault: Fault, window: int) -> None:
        self.state = "open"
        self.trips += 1
        self.last_fault = fault
        self.opened_at = window

    def close(self) -> None:
        self.state = "closed"


@dataclass
class _Watch:
    kernel: str
    site: int
    budget_s: float
    baseline_confidence: float
    slow: int = 0
    confidences: list[float] = field(default_factory=list)


class HealthMonitor:
    def __init__(self, limits: HealthLimits | None = None) -> None:
        self.limits = limits or HealthLimits()
        self.breakers: dict[str, CircuitBreaker] = {}
        self._watch: dict[str, _Watch] = {}

    def breaker(self, kernel: str) -> CircuitBreaker:
        return self.breakers.setdefault(kernel, CircuitBreaker(kernel))

    def budget_for(self, boot_median_s: float) -> float:
        return max(self.limits.latency_floor_s, self.limits.latency_factor * boot_median_s)

    def watch(self, kernel: str, site: int, budget_s: float, baseline_confidence: float) -> None:
        self._watch[kernel] = _Watch(kernel, site, budget_s, baseline_confidence)

    def unwatch(self, kernel: str) -> None:
        self._watch.pop(kernel, None)

    def watching(self, kernel: str) -> bool:
        return kernel in self._watch

    def check(
        self, result: WindowResult, config: ChainConfig, window: int, drift: list[float] | None = None
    ) -> list[Fault]:
        """Faults of this window for the live candidates (each kernel at most once)."""
        lim = self.limits
        faults: dict[str, Fault] = {}
        for site, name, code in result.faults:
            if code == "nan":
                faults[name] = Fault("health_nan", site, name, "kernel output holds NaN/inf")
        for site, slot in enumerate(config.slots):
            cand = slot.candidate
            if cand is None or slot.alpha <= 0.0 or cand.name in faults:
                continue
            w = self._watch.get(cand.name)
            if w is None:
                continue
            obs = result.sites[site] if site < len(result.sites) else None
            if not result.finite:
                faults[cand.name] = Fault("health_nan", site, cand.name, "logits hold NaN/inf with the kernel live")
                continue
            if obs is not None:
                w.slow = w.slow + 1 if obs.kernel_s > w.budget_s else 0
                if w.slow >= lim.latency_strikes:
                    faults[cand.name] = Fault(
                        "health_latency", site, cand.name,
                        f"{obs.kernel_s * 1e3:.2f} ms per invoke over a {w.budget_s * 1e3:.2f} ms budget "
                        f"for {w.slow} windows",
                        {"kernel_ms": obs.kernel_s * 1e3, "budget_ms": w.budget_s * 1e3},
                    )
                    continue
                if obs.relative_change is not None and obs.relative_change > lim.max_relative_change:
                    faults[cand.name] = Fault(
                        "health_drift", site, cand.name,
                        f"kernel changes its site by {obs.relative_change:.1f}x the activation's size",
                        {"relative_change": obs.relative_change},
                    )
                    continue
            if drift is not None and site < len(drift) and drift[site] > lim.max_drift:
                faults[cand.name] = Fault(
                    "health_drift", site, cand.name, f"site drift {drift[site]:.1f} sigma", {"drift": drift[site]}
                )
                continue
            w.confidences.append(max(result.probs.tolist()))  # the same number as float(np.max(probs))
            if len(w.confidences) > lim.confidence_windows:  # only the last ones are read
                del w.confidences[: -lim.confidence_windows]
            recent = w.confidences
            if len(recent) >= lim.confidence_windows:
                # np.mean's own arithmetic (the pairwise sum over the count) without its dispatch
                conf = float(np.add.reduce(np.array(recent)) / len(recent))
                if conf < lim.confidence_floor or conf < w.baseline_confidence - lim.confidence_drop:
                    faults[cand.name] = Fault(
                        "health_confidence", site, cand.name,
                        f"mean top-class probability {conf:.2f} (before the kernel: {w.baseline_confidence:.2f})",
                        {"confidence": conf, "baseline": w.baseline_confidence},
                    )
        for name, fault in faults.items():
            self.breaker(name).open(fault, window)
            self.unwatch(name)
        return list(faults.values())
