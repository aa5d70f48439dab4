"""The on-device Tamiyo: which kernel, at which site, with which alpha target — or none.

It reads Tamiyo's feature vector (:mod:`kasmina_edge.core.features`) and compares it with a clean
reference (from the bundle when the build recorded one, else measured on the device's first windows).
Rules, the host's (:mod:`kasmina_edge.core.symptoms`): a *symptom* is present when its feature is worse
than the reference by a threshold (noise, baseline or mains power 3 dB up; median beat no longer like the
template; a clean signal with an unsure model or drifting sites: a patient shift). The kernels a
bundle holds are tagged with the condition the host grew them for; a condition treats symptoms
(``emg`` → noise, ``baseline`` → baseline wander, ``lead`` → morphology, ``patient`` → shift).

* a signal symptom (noise, baseline, powerline) counts only where the signal quality index
  (:func:`kasmina_edge.runtime.observation.signal_quality_ratio`, ``ecg.quality``'s readability) has fallen to
  ``quality_drop`` of its clean reference: band powers move on clean records (a new rhythm, the
  wearer moving), while a condition that needs a kernel makes the QRS complexes harder to read;
* activate: the dominant symptom has been present for ``onset_windows`` decisions and no live
  kernel treats it; among the kernels that may run (dormant, breaker closed) treating it, take the
  best by the site prior for the symptom, the sites' drift and the host's measured gain;
* retire: a live kernel none of whose symptoms has been present for ``clear_windows`` decisions is
  retired (reason ``condition_cleared``);
* the small exported policy, when the bundle carries one, chooses act/wait and the site and
  blueprint instead of the rules; the rules still retire kernels, and masks keep its choice to
  kernels that exist and may run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.contracts.events import KernelDecision
from kasmina_edge.core.features import INDEX, N_FEATURES, N_SITES
from kasmina_edge.core.symptoms import (
    SIGNAL_SYMPTOMS,
    SITE_PRIOR,
    SYMPTOMS,
    symptom_severity,
)

POLICY_FORMAT = "kasmina-tamiyo-mlp/1"


@dataclass(frozen=True)
class KernelChoice:
    """What the controller knows of a kernel it may choose."""

    name: str
    site: int
    blueprint: str
    symptoms: tuple[str, ...]
    gain: float = 0.0


@dataclass(frozen=True)
class KernelControllerConfig:
    power: float = 0.15  # 3 dB (features are dB / 20) above the reference
    template_corr: float = 0.85
    entropy: float = 0.04
    drift: float = 0.25
    onset_windows: int = 1
    clear_windows: int = 12
    min_alpha: float = 0.5
    quality_drop: float = 0.5  # signal symptoms need the quality index at or below this share of its reference


class PolicyError(KasminaError):
    """A policy artifact that does not match the format the device reads."""


@dataclass
class ExportedPolicy:
    """The host policy's MLP as plain arrays: trunk (Linear+ReLU)*, then act/location/blueprint heads."""

    trunk: list[tuple[np.ndarray, np.ndarray]]
    heads: dict[str, tuple[np.ndarray, np.ndarray]]
    sites: list[str]
    blueprints: list[str]
    reference: np.ndarray | None = None

    @classmethod
    def from_json(cls, blob: Mapping[str, Any]) -> ExportedPolicy:
        if blob.get("format") != POLICY_FORMAT:
            raise PolicyError(f"policy: format {blob.get('format')!r}, this runtime reads {POLICY_FORMAT!r}")
        try:
            trunk = [(np.asarray(layer["weight"], np.float32), np.asarray(layer["bias"], np.float32)) for layer in blob["trunk"]]
            heads = {
                k: (np.asarray(v["weight"], np.float32), np.asarray(v["bias"], np.float32))
                for k, v in blob["heads"].items()
            }
            sites, blueprints = list(blob["sites"]), list(blob["blueprints"])
        except (KeyError, TypeError, ValueError) as exc:
            raise PolicyError(f"policy: malformed ({exc})") from None
        if not trunk or trunk[0][0].shape[1] != N_FEATURES:
            raise PolicyError(f"policy: its first layer does not take the {N_FEATURES} features")
        for name in ("act", "location", "blueprint"):
            if name not in heads:
                raise PolicyError(f"policy: no {name!r} head")
        ref = blob.get("reference")
        return cls(trunk, heads, sites, blueprints, np.asarray(ref, np.float32) if ref is not None else None)

    def logits(self, obs: np.ndarray) -> dict[str, np.ndarray]:
        h = obs.astype(np.float32)
        for w, b in self.trunk:
            h = np.maximum(w @ h + b, 0.0)
        return {k: w @ h + b for k, (w, b) in self.heads.items()}


@dataclass
class KernelController:
    """The on-device Tamiyo: one :class:`KernelDecision` per decision window."""

    kernels: list[KernelChoice]
    n_sites: int
    config: KernelControllerConfig = field(default_factory=KernelControllerConfig)
    reference: np.ndarray | None = None
    reference_quality: float | None = None  # the quality index on the clean reference windows
    policy: ExportedPolicy | None = None
    _present: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SYMPTOMS, 0))
    _absent: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SYMPTOMS, 0))
    # the engine asks needs_quality() and then decide() on the same observation: the rule runs once
    _severity_of: tuple[np.ndarray, np.ndarray, dict[str, float]] | None = None

    @property
    def ready(self) -> bool:
        return self.reference is not None

    def symptoms(self, obs: np.ndarray, quality: float | None = None) -> dict[str, float]:
        """Severity (> 0 when present) of each symptom against the reference (the host's rules); with a
        quality index and its reference, a signal symptom the quality does not corroborate is absent."""
        assert self.reference is not None, "no reference observation yet"
        c = self.config
        cached = self._severity_of
        if cached is not None and cached[1] is self.reference and np.array_equal(cached[0], obs):
            sev = dict(cached[2])
        else:
            sev = symptom_severity(
                obs, self.reference, power=c.power, template_corr=c.template_corr, entropy=c.entropy, drift=c.drift
            )
            self._severity_of = (np.array(obs), self.reference, dict(sev))
        ref_q = self.reference_quality
        if quality is not None and ref_q is not None and ref_q > 0 and quality > c.quality_drop * ref_q:
            for s in SIGNAL_SYMPTOMS:
                sev[s] = min(sev[s], 0.0)
        return sev

    def needs_quality(self, obs: np.ndarray, live: Mapping[str, int], available: set[str]) -> bool:
        """Whether the quality index could change this decision (it costs a filter pass, ~1 ms on a host):
        while warming up (its reference), or where a signal symptom shows in the features and a kernel that
        may run, none live, treats it. Otherwise symptoms come from the features alone, as before."""
        if self.reference is None:
            return True
        if self.reference_quality is None:
            return False
        sev = self.symptoms(obs)
        by_name = {k.name: k for k in self.kernels}
        treated = {s for n in live if n in by_name for s in by_name[n].symptoms}
        could = {s for n in available if n in by_name for s in by_name[n].symptoms}
        return any(sev[s] > 0 and s in could and s not in treated for s in SIGNAL_SYMPTOMS)

    def _site_scores(self, obs: np.ndarray, symptom: str) -> np.ndarray:
        n = self.n_sites
        drift = np.array([obs[INDEX[f"drift_site{i}"]] if i < N_SITES else 0.0 for i in range(n)], np.float64)
        prior = np.array([SITE_PRIOR[symptom][i] if i < N_SITES else 0.1 for i in range(n)], np.float64)
        return 0.5 * drift / (drift.max() + 1e-9) + prior

    def _alpha(self, severity: float) -> float:
        # severity in dB/20 above the threshold: 0 -> min_alpha, 0.5 (10 dB) or more -> 1
        return float(min(1.0, max(self.config.min_alpha, self.config.min_alpha + severity)))

    def decide(
        self,
        obs: np.ndarray,
        live: Mapping[str, int],
        available: set[str],
        quality: float | None = None,
    ) -> KernelDecision:
        """``live``: kernels whose output is in the chain now (any live stage) -> their site;
        ``available``: kernels that may be germinated now (dormant, breaker closed); ``quality``: the
        signal quality index of the same seconds (None: symptoms from the features alone)."""
        if obs[INDEX["security_alert"]] >= 0.5:
            return KernelDecision("wait", "security_alert")
        if self.reference is None:
            return KernelDecision("wait", "warming_up")
        sev = self.symptoms(obs, quality)
        for s, v in sev.items():
            if v > 0:
                self._present[s] += 1
                self._absent[s] = 0
            else:
                self._absent[s] += 1
                self._present[s] = 0
        by_name = {k.name: k for k in self.kernels}
        # retire first: a kernel whose condition is gone frees its slot and its cycles
        for name, site in sorted(live.items(), key=lambda kv: (kv[1], kv[0])):
            k = by_name.get(name)
            if k is None or not k.symptoms:
                continue
            if all(self._absent[s] >= self.config.clear_windows for s in k.symptoms):
                return KernelDecision("retire", "condition_cleared", site=site, kernel=name,
                                symptom=k.symptoms[0], severity=max(sev[s] for s in k.symptoms))
        if self.policy is not None:
            return self._policy_decision(obs, live, available, sev)
        # The worst symptom first; one no kernel can treat does not hide the next (EMG also lifts the
        # mains bands: "powerline" can outrank "noise" while only a noise kernel exists).
        ranked = sorted(((v, k) for k, v in sev.items() if v > 0), reverse=True)
        if not ranked:
            return KernelDecision("wait", "no_degradation")
        waiting: KernelDecision | None = None
        for severity, symptom in ranked:
            if self._present[symptom] < self.config.onset_windows:
                why = "onset_pending"
            elif any(n in by_name and symptom in by_name[n].symptoms for n in live):
                why = "already_treated"
            else:
                options = [k for k in self.kernels if k.name in available and symptom in k.symptoms]
                if options:
                    scores = self._site_scores(obs, symptom)
                    best = max(options, key=lambda k: (scores[k.site] + 0.1 * (k.gain or 0.0), k.gain or 0.0))
                    return KernelDecision("activate", f"{symptom} severity {severity:.2f}", site=best.site,
                                    kernel=best.name, alpha_target=self._alpha(severity), symptom=symptom,
                                    severity=severity)  # fmt: skip
                why = "no_kernel_for_symptom"
            waiting = waiting or KernelDecision("wait", why, symptom=symptom, severity=severity)
        assert waiting is not None
        return waiting

    def _policy_decision(
        self, obs: np.ndarray, live: Mapping[str, int], available: set[str], sev: dict[str, float]
    ) -> KernelDecision:
        assert self.policy is not None
        pol = self.policy
        options = [k for k in self.kernels if k.name in available and k.site not in live.values()]
        out = pol.logits(obs)
        symptom, severity = max(sev.items(), key=lambda kv: kv[1])
        if not options or float(out["act"][1]) <= float(out["act"][0]):
            return KernelDecision("wait", "policy_wait" if options else "no_kernel_available", source="policy",
                            symptom=symptom if severity > 0 else None, severity=severity)
        site_names = [f"site{i}" for i in range(self.n_sites)]
        loc = out["location"].astype(np.float64).copy()
        allowed_sites = {k.site for k in options}
        for j, name in enumerate(pol.sites):
            if name not in site_names or site_names.index(name) not in allowed_sites:
                loc[j] = -np.inf
        site = site_names.index(pol.sites[int(np.argmax(loc))])
        at_site = [k for k in options if k.site == site]
        bp = out["blueprint"].astype(np.float64)
        ranked = [pol.blueprints[j] for j in np.argsort(-bp)]
        pick = next((k for b in ranked for k in at_site if k.blueprint == b), at_site[0])
        return KernelDecision("activate", "policy", site=site, kernel=pick.name,
                        alpha_target=self._alpha(max(severity, 0.0)), symptom=pick.symptoms[0] if pick.symptoms else None,
                        severity=severity, source="policy")
