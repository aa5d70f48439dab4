"""Tamiyo's observation on the host: the decision-point record the policy learns from.

The feature vector itself, its order and its signal features are :mod:`kasmina_edge.core.features`
(one definition: the device computes exactly what the policy is trained on). What is here is host-only:
the :class:`Observation` a morph or patient run fills in, the reference template of a clean recording,
and per-site statistics and drift from a batch of activations.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kasmina_edge.core.features import SignalFeatures, SiteStats, beat_matrix, mean_drift, observation_vector


@dataclass
class Observation:
    """Everything Tamiyo sees at one decision point; ``vector()`` is the policy's input."""

    signal: SignalFeatures
    pred_entropy: float
    site_drift: tuple[float, ...]
    battery: float = 1.0
    link_state: float = 1.0
    security_alert: bool = False
    live_seeds: float = 0.0
    plateau: bool = True
    calibration: bool = False
    extras: dict[str, float] = field(default_factory=dict)  # host-only context (never a policy input)

    def vector(self) -> np.ndarray:
        return observation_vector(
            self.signal,
            self.pred_entropy,
            self.site_drift,
            battery=self.battery,
            link_state=self.link_state,
            security_alert=self.security_alert,
            live_seeds=self.live_seeds,
            plateau=self.plateau,
            calibration=self.calibration,
        )


def reference_template(sig: np.ndarray, fs: float, r_peaks: np.ndarray) -> np.ndarray:
    """The median beat shape of a clean recording: shipped with the model, compared against later."""
    beats = beat_matrix(sig, fs, r_peaks)
    if beats.shape[0] == 0:
        raise ValueError("no complete beat around the given R peaks")
    return np.median(beats, axis=0).astype(np.float32)


def site_stats(act: np.ndarray) -> SiteStats:
    """act: (B, C, L) → per-channel statistics over batch and time."""
    a = np.asarray(act, dtype=np.float64)
    return SiteStats(mean=a.mean(axis=(0, 2)), std=a.std(axis=(0, 2)))


def site_drift(act: np.ndarray, ref: SiteStats) -> float:
    """How far a site has moved (:func:`kasmina_edge.core.features.mean_drift`), from a batch of activations."""
    return mean_drift(site_stats(act).mean, ref)
