"""Tamiyo's symptom rule: which condition the signal shows, how severe, where it is best treated.

A *symptom* is present when its feature (:mod:`kasmina_edge.core.features`) is worse than the clean
reference by a threshold: noise, baseline or mains power up; the median beat no longer like the template;
a clean signal with an unsure model, drifting sites or a calibration session (a patient shift). The host's
heuristic Tamiyo (``host/tamiyo/heuristic.py``) and the device's controller (``runtime/controller.py``)
decide by this one rule; each picks its own thresholds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kasmina_edge.core.features import INDEX, N_SITES

SYMPTOMS = ("noise", "baseline", "powerline", "morphology", "shift")
SIGNAL_SYMPTOMS = ("noise", "baseline", "powerline")  # what the quality index corroborates
SITE_PRIOR: dict[str, tuple[float, ...]] = {
    "noise": (1.0, 0.8, 0.4, 0.2),
    "baseline": (1.0, 0.7, 0.3, 0.2),
    "powerline": (1.0, 0.6, 0.3, 0.1),
    "morphology": (0.4, 1.0, 0.8, 0.5),
    "shift": (0.2, 0.4, 0.8, 1.0),
}


def symptom_severity(
    obs: np.ndarray, ref: np.ndarray, *, power: float, template_corr: float, entropy: float, drift: float
) -> dict[str, float]:
    """Severity (> 0 when present) of each symptom against the clean reference ``ref``: the rule the
    host's heuristic Tamiyo and the device's controller share."""
    sev = {
        "noise": obs[INDEX["noise_power"]] - ref[INDEX["noise_power"]] - power,
        "baseline": obs[INDEX["baseline_power"]] - ref[INDEX["baseline_power"]] - power,
        "powerline": obs[INDEX["powerline_power"]] - ref[INDEX["powerline_power"]] - power,
        "morphology": template_corr - obs[INDEX["qrs_template_corr"]],
    }
    clean = all(v <= 0 for v in sev.values())
    ent = obs[INDEX["pred_entropy"]] - ref[INDEX["pred_entropy"]] - entropy
    worst = max(obs[INDEX[f"drift_site{i}"]] for i in range(N_SITES)) - drift
    # A patient shift: the signal itself looks clean while the model is unsure, its sites drift,
    # or the wearer's own annotated beats are at hand (a calibration session).
    calib = 0.1 if obs[INDEX["calibration"]] >= 0.5 else -1.0
    sev["shift"] = max(ent, worst * 0.25, calib) if clean else -1.0
    return {k: float(v) for k, v in sev.items()}


# condition tag of a seed (host morph conditions and artifact names) -> symptoms it treats
CONDITION_SYMPTOMS: dict[str, tuple[str, ...]] = {
    "emg": ("noise",),
    "noise": ("noise",),
    "muscle": ("noise",),
    "motion": ("noise", "baseline"),
    "electrode_motion": ("noise", "baseline"),
    "baseline": ("baseline",),
    "baseline_wander": ("baseline",),
    "bw": ("baseline",),
    "powerline": ("powerline",),
    "mains": ("powerline",),
    "lead": ("morphology",),
    "morphology": ("morphology",),
    "patient": ("shift",),
    "shift": ("shift",),
}


def symptoms_of(tags: Sequence[str]) -> tuple[str, ...]:
    out: list[str] = []
    for tag in tags:
        for s in CONDITION_SYMPTOMS.get(tag.lower(), ()):
            if s not in out:
                out.append(s)
    return tuple(out)
