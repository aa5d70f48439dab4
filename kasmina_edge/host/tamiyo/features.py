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
from scipy import signal as sps

FEATURE_VERSION = 1
N_SITES = 4
FEATURE_NAMES: tuple[str, ...] = (
    "noise_power",
    "baseline_power",
    "powerline_power",
    "qrs_template_corr",
    "beat_consistency",
    "pred_entropy",
    *(f"drift_site{i}" for i in range(N_SITES)),
    "battery",
    "link_state",
    "security_alert",
    "live_seeds",
    "plateau",
    "calibration",
)
N_FEATURES = len(FEATURE_NAMES)
INDEX: dict[str, int] = {n: i for i, n in enumerate(FEATURE_NAMES)}

TEMPLATE_HALF_S = 0.1  # ±100 ms around the R peak: the QRS and its immediate surroundings
_EPS = 1e-12


@dataclass(frozen=True)
class SignalFeatures:
    noise_power: float
    baseline_power: float
    powerline_power: float
    qrs_template_corr: float
    beat_consistency: float


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


def _band_power(f: np.ndarray, p: np.ndarray, lo: float, hi: float) -> float:
    sel = (f >= lo) & (f < hi)
    return float(p[sel].sum()) if sel.any() else 0.0


def _db_ratio(a: float, b: float) -> float:
    return float(np.clip(10.0 * np.log10((a + _EPS) / (b + _EPS)) / 20.0, -3.0, 3.0))


def beat_matrix(sig: np.ndarray, fs: float, r_peaks: np.ndarray) -> np.ndarray:
    """(n_beats, 2·half+1) segments around each R peak that fits in the signal, each mean-removed."""
    half = int(round(TEMPLATE_HALF_S * fs))
    r = np.asarray(r_peaks, dtype=np.int64)
    r = r[(r >= half) & (r + half < sig.shape[0])]
    if r.size == 0:
        return np.zeros((0, 2 * half + 1), dtype=np.float32)
    idx = r[:, None] + np.arange(-half, half + 1)[None, :]
    beats = sig[idx].astype(np.float64)
    return (beats - beats.mean(axis=1, keepdims=True)).astype(np.float32)


def reference_template(sig: np.ndarray, fs: float, r_peaks: np.ndarray) -> np.ndarray:
    """The median beat shape of a clean recording: shipped with the model, compared against later."""
    beats = beat_matrix(sig, fs, r_peaks)
    if beats.shape[0] == 0:
        raise ValueError("no complete beat around the given R peaks")
    return np.median(beats, axis=0).astype(np.float32)


def _corr_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=-1, keepdims=True)
    b = b - b.mean(axis=-1, keepdims=True)
    num = (a * b).sum(axis=-1)
    den = np.sqrt((a * a).sum(axis=-1) * (b * b).sum(axis=-1)) + _EPS
    return np.asarray(num / den)


def signal_features(sig: np.ndarray, fs: float, r_peaks: np.ndarray, template: np.ndarray | None) -> SignalFeatures:
    """Band powers (Welch) relative to the QRS band, and beat-shape agreement."""
    x = np.asarray(sig, dtype=np.float64)
    nper = int(min(x.shape[0], 4 * fs))
    f, p = sps.welch(x, fs=fs, nperseg=nper)
    qrs = _band_power(f, p, 5.0, 25.0)
    mains = _band_power(f, p, 49.0, 51.0) + _band_power(f, p, 59.0, 61.0)
    hf = _band_power(f, p, 40.0, min(100.0, fs / 2)) - mains
    base = _band_power(f, p, 0.0, 0.7)
    beats = beat_matrix(sig, fs, r_peaks)
    if beats.shape[0] == 0:
        tmpl_corr, consistency = 0.0, 0.0
    else:
        median = np.median(beats, axis=0)
        consistency = float(np.mean(_corr_rows(beats, median[None, :])))
        if template is not None and template.shape == median.shape:
            tmpl_corr = float(_corr_rows(median[None, :], template[None, :])[0])
        else:
            tmpl_corr = 1.0
    return SignalFeatures(
        noise_power=_db_ratio(max(hf, 0.0), qrs),
        baseline_power=_db_ratio(base, qrs),
        powerline_power=_db_ratio(mains, qrs),
        qrs_template_corr=tmpl_corr,
        beat_consistency=consistency,
    )


def prediction_entropy(probs: np.ndarray) -> float:
    """Mean entropy of the class probabilities, normalised to [0, 1]."""
    p = np.clip(np.asarray(probs, dtype=np.float64), _EPS, 1.0)
    h = -(p * np.log(p)).sum(axis=1)
    return float(h.mean() / np.log(p.shape[1]))


@dataclass(frozen=True)
class SiteStats:
    """Per-channel mean and std of one site's activation on the reference (clean training) data."""

    mean: np.ndarray
    std: np.ndarray


def site_stats(act: np.ndarray) -> SiteStats:
    """act: (B, C, L) → per-channel statistics over batch and time."""
    a = np.asarray(act, dtype=np.float64)
    return SiteStats(mean=a.mean(axis=(0, 2)), std=a.std(axis=(0, 2)))


def site_drift(act: np.ndarray, ref: SiteStats) -> float:
    """Mean over channels of |μ − μ_ref|, over the mean reference σ: how far a site has moved.

    The σ is pooled over channels: after a ReLU some channels are (almost) never active, and
    dividing by their own σ would turn a tiny shift into an enormous drift.
    """
    cur = site_stats(act)
    return float(np.mean(np.abs(cur.mean - ref.mean)) / (float(ref.std.mean()) + 1e-6))
