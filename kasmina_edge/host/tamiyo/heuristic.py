"""The heuristic Tamiyo: explicit rules the policy network first learns to imitate.

When: plateau detection on the monitored metric (validation macro-F1 on the host; the
device watches prediction entropy instead). Whether: a symptom must show against the
reference observation taken on clean data (more noise, baseline or mains power, a changed
beat shape, or higher prediction entropy with a clean signal: a patient shift).
Where: per-site health telemetry (activation drift), weighted by where the symptom is best
treated (signal artifacts early, morphology in the middle, patient shift late).
What: the first blueprint on the symptom's preference list that the masks allow.
How fast: intensity from the symptom's severity; grafting from drift and battery.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from kasmina_edge.core.features import INDEX, N_SITES
from kasmina_edge.core.symptoms import SITE_PRIOR, symptom_severity
from kasmina_edge.host.tamiyo.masks import ACT, ActionSpace, Masks

# The symptoms, where each is best treated (a prior weight per site, site0 = earliest) and how
# severe it is: the device's controller decides by the same rules (core.symptoms).

# Blueprint preference by symptom: filters for artifacts, re-mappings for shape and patient shift.
BLUEPRINT_PREFERENCE: dict[str, tuple[str, ...]] = {
    "noise": ("sliding_conv", "denoising_autoencoder", "depthwise_separable", "bottleneck_adapter"),
    "baseline": ("sliding_conv", "depthwise_separable", "denoising_autoencoder", "bottleneck_adapter"),
    "powerline": ("depthwise_separable", "sliding_conv", "bottleneck_adapter", "low_rank_residual"),
    "morphology": ("residual_mlp", "sliding_conv", "bottleneck_adapter", "low_rank_residual"),
    "shift": ("residual_mlp", "bottleneck_adapter", "low_rank_residual", "latent_align"),
}
SEVERE = 1.0  # from this severity on, the budget buys capacity: the largest of the top choices that fits

GRAFTING_DEFAULT = "performance_linked"
GRAFTING_DRIFT = "drift_controlled"
GRAFTING_CHEAP = "fixed_ramp"


@dataclass(frozen=True)
class Decision:
    act: bool
    site: int | None = None
    blueprint: int | None = None
    intensity: int = 1
    grafting: int | None = None
    reason: str = ""

    def describe(self, space: ActionSpace) -> dict[str, object]:
        if not self.act:
            return {"act": False, "reason": self.reason}
        assert self.site is not None and self.blueprint is not None and self.grafting is not None
        return {
            "act": True,
            "site": space.sites[self.site],
            "blueprint": space.blueprints[self.blueprint],
            "intensity": space.intensities[self.intensity],
            "grafting": space.graftings[self.grafting],
            "reason": self.reason,
        }


@dataclass
class PlateauDetector:
    """True once the best value of the last ``patience`` steps improved less than ``min_delta``."""

    patience: int = 3
    min_delta: float = 0.002
    history: list[float] = field(default_factory=list)

    def update(self, value: float) -> bool:
        self.history.append(value)
        return self.plateau()

    def plateau(self) -> bool:
        if len(self.history) <= self.patience:
            return False
        before = max(self.history[: -self.patience])
        recent = max(self.history[-self.patience :])
        return recent - before < self.min_delta


@dataclass(frozen=True)
class Thresholds:
    power: float = 0.15  # 3 dB (features are dB / 20) above the clean reference
    template_corr: float = 0.85  # median beat vs reference template
    entropy: float = 0.04  # mean normalised entropy above the reference
    drift: float = 0.25  # scaled per-site drift (features' drift / 4) that counts as unhealthy


@dataclass
class HeuristicTamiyo:
    """Rule-based controller. ``reference`` is the feature vector measured on clean data."""

    space: ActionSpace
    reference: np.ndarray
    thresholds: Thresholds = field(default_factory=Thresholds)
    params: dict[tuple[str, str], int] = field(default_factory=dict)  # (site, blueprint) -> parameters

    def symptoms(self, obs: np.ndarray) -> dict[str, float]:
        """Severity (> 0 when present) of each symptom against the clean reference."""
        t = self.thresholds
        return symptom_severity(
            obs, self.reference, power=t.power, template_corr=t.template_corr, entropy=t.entropy, drift=t.drift
        )

    def site_scores(self, obs: np.ndarray, symptom: str) -> np.ndarray:
        drift = np.array([obs[INDEX[f"drift_site{i}"]] for i in range(len(self.space.sites))], dtype=np.float64)
        norm = drift / (drift.max() + 1e-9)
        prior = np.array(SITE_PRIOR[symptom][: len(self.space.sites)], dtype=np.float64)
        return 0.5 * norm + prior

    def rank_sites(self, obs: np.ndarray, masks: Masks, symptom: str) -> list[int]:
        scores = self.site_scores(obs, symptom)
        order = [int(i) for i in np.argsort(-scores, kind="stable")]
        return [i for i in order if masks.location[i] and masks.blueprint[i].any()]

    def pick_blueprint(self, site: int, masks: Masks, symptom: str, severity: float = 0.0) -> int | None:
        """The symptom's first allowed blueprint; when severe, the largest of its first three allowed."""
        allowed = [
            self.space.blueprints.index(n)
            for n in BLUEPRINT_PREFERENCE[symptom]
            if n in self.space.blueprints and masks.blueprint[site, self.space.blueprints.index(n)]
        ]
        if allowed:
            if severity >= SEVERE and self.params:
                top = allowed[:3]
                size = [self.params.get((self.space.sites[site], self.space.blueprints[j]), 0) for j in top]
                return top[int(np.argmax(size))]
            return allowed[0]
        anything = np.flatnonzero(masks.blueprint[site])
        return int(anything[0]) if anything.size else None

    def pick_intensity(self, severity: float) -> int:
        levels = len(self.space.intensities)
        # severity < 1 (dB/20 units, or correlation) → the base rate (index 1); ≥ 1 → double; ≥ 2 → ×4.
        return int(min(levels - 1, 1 + int(severity)))

    def pick_grafting(self, obs: np.ndarray) -> int:
        drift = max(obs[INDEX[f"drift_site{i}"]] for i in range(N_SITES))
        if obs[INDEX["battery"]] < 0.2 and GRAFTING_CHEAP in self.space.graftings:
            name = GRAFTING_CHEAP
        elif drift > 2 * self.thresholds.drift and GRAFTING_DRIFT in self.space.graftings:
            name = GRAFTING_DRIFT
        else:
            name = GRAFTING_DEFAULT if GRAFTING_DEFAULT in self.space.graftings else self.space.graftings[0]
        return self.space.graftings.index(name)

    def decide(self, obs: np.ndarray, masks: Masks) -> Decision:
        if obs[INDEX["security_alert"]] >= 0.5:
            return Decision(False, reason="security_alert")
        if not masks.act[ACT]:
            return Decision(False, reason="masked")
        if obs[INDEX["plateau"]] < 0.5:
            return Decision(False, reason="still_improving")
        sev = self.symptoms(obs)
        symptom, severity = max(sev.items(), key=lambda kv: kv[1])
        if severity <= 0:
            return Decision(False, reason="no_degradation")
        for site in self.rank_sites(obs, masks, symptom):
            bp = self.pick_blueprint(site, masks, symptom, severity)
            if bp is not None:
                return Decision(
                    True,
                    site=site,
                    blueprint=bp,
                    intensity=self.pick_intensity(severity),
                    grafting=self.pick_grafting(obs),
                    reason=f"{symptom} severity {severity:.2f}",
                )
        return Decision(False, reason="no_allowed_site")

    def dominant_symptom(self, obs: np.ndarray) -> str:
        sev = self.symptoms(obs)
        return max(sev.items(), key=lambda kv: kv[1])[0]


def agreement(a: Sequence[Decision], b: Sequence[Decision]) -> float:
    """Fraction of decisions that agree on act/wait and, when acting, on site and blueprint."""
    same = 0
    for x, y in zip(a, b, strict=True):
        if x.act == y.act and (not x.act or (x.site == y.site and x.blueprint == y.blueprint)):
            same += 1
    return same / max(1, len(a))
