"""Tamiyo's observation: a fixed-order feature vector an on-device controller can compute.

Everything here is numpy/scipy on the raw signal and on quantities the device runtime has
anyway (the model's output probabilities, the seed sites' activation statistics, battery and
link state), so the same vector is built on the host for training and on the device for
deciding. The order below is part of the exported policy's interface: **never reorder**,
only append (and bump ``FEATURE_VERSION``).

Index  name                 meaning (scaled to roughly [-1, 1] or [0, 1])
  0    noise_power          high-frequency (40–100 Hz, mains bands excluded) power / QRS-band power, dB / 20
  1    baseline_power       sub-0.7 Hz power / QRS-band power, dB / 20
  2    powerline_power      50 and 60 Hz (±1 Hz) power / QRS-band power, dB / 20
  3    qrs_template_corr    correlation of the current median beat with the reference template (1 = same shape)
  4    beat_consistency     mean correlation of each beat with the current median beat
  5    pred_entropy         mean prediction entropy / log(n_classes)
  6..9 drift_site0..3       per-site activation drift: mean over channels of |μ − μ_ref| / mean σ_ref, / 4, in [0, 2]
 10    battery              state of charge, 0–1
 11    link_state           0 = down, 0.5 = constrained (LPWAN), 1 = broadband
 12    security_alert       1 when the device reported a security alert (forces No-Op)
 13    live_seeds           fraction of sites that already hold a live seed
 14    plateau              1 when the monitored metric has stopped improving
 15    calibration          1 when annotated beats of the current wearer are at hand (a calibration
                            session): what makes a patient-specific seed possible at all
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# One definition of the feature vector and its signal features, shared with the device: the runtime's
# module is numpy/scipy only (a device installs no torch), and the policy trained here reads exactly
# what the device computes.
from kasmina_edge.runtime.features import (
    FEATURE_NAMES,
    FEATURE_VERSION,
    INDEX,
    N_FEATURES,
    N_SITES,
    TEMPLATE_HALF_S,
    SignalFeatures,
    SiteStats,
    beat_matrix,
    prediction_entropy,
    signal_features,
)
from kasmina_edge.runtime.features import site_drift as _drift_of_mean

__all__ = [
    "FEATURE_NAMES", "FEATURE_VERSION", "INDEX", "N_FEATURES", "N_SITES", "TEMPLATE_HALF_S", "Observation",
    "SignalFeatures", "SiteStats", "beat_matrix", "prediction_entropy", "reference_template", "signal_features",
    "site_drift", "site_stats",
]  # fmt: skip


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
        drift = list(self.site_drift[:N_SITES]) + [0.0] * max(0, N_SITES - len(self.site_drift))
        v = np.array(
            [
                self.signal.noise_power,
                self.signal.baseline_power,
                self.signal.powerline_power,
                self.signal.qrs_template_corr,
                self.signal.beat_consistency,
                self.pred_entropy,
                *(min(max(d / 4.0, 0.0), 2.0) for d in drift),
                self.battery,
                self.link_state,
                float(self.security_alert),
                self.live_seeds,
                float(self.plateau),
                float(self.calibration),
            ],
            dtype=np.float32,
        )
        assert v.shape == (N_FEATURES,)
        return v


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
    """Mean over channels of |μ − μ_ref|, over the mean reference σ: how far a site has moved.

    The σ is pooled over channels: after a ReLU some channels are (almost) never active, and
    dividing by their own σ would turn a tiny shift into an enormous drift.
    """
    return _drift_of_mean(site_stats(act).mean, ref)
