"""Tamiyo's observation: a fixed-order feature vector that the host trains on and the device computes.

Everything here is numpy/scipy on the raw signal and on quantities a device runtime has anyway (the
model's output probabilities, the seed sites' activation statistics, battery and link state), so the
host's controller (``host/tamiyo``) learns on exactly what the on-device controller (``runtime``) reads.
The order below is part of an exported policy's interface: **never reorder**, only append (and bump
``FEATURE_VERSION``).

Index  name                 meaning (scaled to roughly [-1, 1] or [0, 1])
  0    noise_power          high-frequency (40–100 Hz, mains bands excluded) power / QRS-band power, dB / 20
  1    baseline_power       sub-0.7 Hz power / QRS-band power, dB / 20
  2    powerline_power      50 and 60 Hz (±1 Hz) power / QRS-band power, dB / 20
  3    qrs_template_corr    correlation of the current median beat with the reference template (1 = same shape)
  4    beat_consistency     mean correlation of each beat with the current median beat
  5    pred_entropy         mean prediction entropy / log(n_classes)
  6..9 drift_site0..3       per-site activation drift (:func:`mean_drift`) / 4, clipped to [0, 2]
 10    battery              state of charge, 0–1
 11    link_state           0 = down, 0.5 = constrained (LPWAN), 1 = broadband
 12    security_alert       1 when the device reported a security alert (forces No-Op)
 13    live_seeds           fraction of sites that already hold a live seed
 14    plateau              1 when the monitored metric has stopped improving
 15    calibration          1 when annotated beats of the current wearer are at hand (a calibration
                            session): what makes a patient-specific seed possible at all
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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
TEMPLATE_HALF_S = 0.1
_EPS = 1e-12


@dataclass(frozen=True)
class SignalFeatures:
    noise_power: float
    baseline_power: float
    powerline_power: float
    qrs_template_corr: float
    beat_consistency: float


def _band_power(f: np.ndarray, p: np.ndarray, lo: float, hi: float) -> float:
    sel = (f >= lo) & (f < hi)
    return float(p[sel].sum()) if sel.any() else 0.0


def _db_ratio(a: float, b: float) -> float:
    return float(np.clip(10.0 * np.log10((a + _EPS) / (b + _EPS)) / 20.0, -3.0, 3.0))


def beat_matrix(sig: np.ndarray, fs: float, r_peaks: np.ndarray) -> np.ndarray:
    """(n_beats, 2·half+1) mean-removed segments around each R peak that fits in ``sig``."""
    half = int(round(TEMPLATE_HALF_S * fs))
    r = np.asarray(r_peaks, dtype=np.int64)
    r = r[(r >= half) & (r + half < sig.shape[0])]
    if r.size == 0:
        return np.zeros((0, 2 * half + 1), dtype=np.float32)
    beats = sig[r[:, None] + np.arange(-half, half + 1)[None, :]].astype(np.float64)
    return (beats - beats.mean(axis=1, keepdims=True)).astype(np.float32)


def _corr_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=-1, keepdims=True)
    b = b - b.mean(axis=-1, keepdims=True)
    num = (a * b).sum(axis=-1)
    den = np.sqrt((a * a).sum(axis=-1) * (b * b).sum(axis=-1)) + _EPS
    return np.asarray(num / den)


_HANN: dict[int, tuple[np.ndarray, float]] = {}


def welch_psd(x: np.ndarray, fs: float) -> tuple[np.ndarray, np.ndarray]:
    """``scipy.signal.welch(x, fs, nperseg=min(len(x), 4 fs))``: one Hann segment in plain numpy when the
    signal is no longer than a segment (always, on the device: 4 s of raw signal), scipy otherwise.

    scipy's general machinery costs ~1 ms per call here; the one-segment case is a detrend, a window, one
    real FFT and the density scaling (same formula: |X|^2 / (fs * sum(w^2)), one-sided doubled)."""
    n = x.shape[0]
    nper = int(min(n, 4 * fs))
    if n != nper or n < 8:
        return sps.welch(x, fs=fs, nperseg=nper)  # type: ignore[no-any-return]
    if n not in _HANN:
        w = sps.get_window("hann", n)
        _HANN[n] = (w, float(fs * (w * w).sum()))
    w, norm = _HANN[n]
    spec = np.fft.rfft((x - x.mean()) * w)
    p = (spec.real**2 + spec.imag**2) / norm
    if n % 2:
        p[1:] *= 2.0
    else:
        p[1:-1] *= 2.0
    return np.fft.rfftfreq(n, 1.0 / fs), p


def signal_features(sig: np.ndarray, fs: float, r_peaks: np.ndarray, template: np.ndarray | None) -> SignalFeatures:
    """Band powers (Welch) relative to the QRS band (5–25 Hz), and beat-shape agreement."""
    x = np.asarray(sig, dtype=np.float64)
    f, p = welch_psd(x, fs)
    qrs = _band_power(f, p, 5.0, 25.0)
    mains = _band_power(f, p, 49.0, 51.0) + _band_power(f, p, 59.0, 61.0)
    hf = _band_power(f, p, 40.0, min(100.0, fs / 2)) - mains
    base = _band_power(f, p, 0.0, 0.7)
    beats = beat_matrix(x, fs, r_peaks)
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
    """Mean class-probability entropy, normalised to [0, 1] (rows: windows)."""
    p = np.clip(np.asarray(probs, dtype=np.float64).reshape(-1, np.asarray(probs).shape[-1]), _EPS, 1.0)
    h = -(p * np.log(p)).sum(axis=1)
    return float(h.mean() / np.log(p.shape[1]))


@dataclass
class SiteStats:
    """Per-channel mean and standard deviation of a site's activation (over windows and time)."""

    mean: np.ndarray
    std: np.ndarray


def mean_drift(mean: np.ndarray, ref: SiteStats) -> float:
    """How far a site has moved: the mean over channels of |μ − μ_ref| over the pooled reference σ.

    The σ is pooled over channels: after a ReLU some channels are (almost) never active, and dividing by
    their own σ would turn a tiny shift into an enormous drift.
    """
    return float(np.mean(np.abs(mean - ref.mean)) / (float(ref.std.mean()) + 1e-6))


def observation_vector(
    signal: SignalFeatures,
    pred_entropy: float,
    drift: Sequence[float],
    *,
    battery: float = 1.0,
    link_state: float = 1.0,
    security_alert: bool = False,
    live_seeds: float = 0.0,
    plateau: bool = True,
    calibration: bool = False,
) -> np.ndarray:
    """The 16 features in the policy's order (drift scaled by 1/4 and clipped to [0, 2])."""
    d = list(drift[:N_SITES]) + [0.0] * max(0, N_SITES - len(drift))
    v = np.array(
        [
            signal.noise_power,
            signal.baseline_power,
            signal.powerline_power,
            signal.qrs_template_corr,
            signal.beat_consistency,
            pred_entropy,
            *(min(max(x / 4.0, 0.0), 2.0) for x in d),
            battery,
            link_state,
            float(security_alert),
            live_seeds,
            float(plateau),
            float(calibration),
        ],
        dtype=np.float32,
    )
    assert v.shape == (N_FEATURES,)
    return v
