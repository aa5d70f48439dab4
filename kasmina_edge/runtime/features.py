"""The on-device Tamiyo's observation: the host's feature vector, computed from what the device has.

The order and meaning of the 16 features are the host's (``kasmina_edge/host/tamiyo/features.py``,
``FEATURE_VERSION`` 1): an exported policy is trained on them. The host module lives in the torch
package tree, which a device does not install, so the signal features are computed here again the
same way (Welch band powers relative to the QRS band; median-beat correlation); a test checks that
both give the same numbers on the same samples.

What the device feeds in: the last few seconds of raw signal (a ring buffer), the R peaks the
beatizer found in it, class probabilities and per-site activation statistics from the executor,
battery and link state from the platform.
"""

from __future__ import annotations

from collections import deque
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


def signal_quality_ratio(sig: np.ndarray, fs: float, r_peaks: np.ndarray) -> float:
    """The readability index of :mod:`kasmina_edge.ecg.quality` (median QRS peak over the in-band floor)
    over the whole buffer as one window: clean ECG sits at 10-30, muscle noise at 0 dB near 5-8.
    0 when the buffer holds no beat (nothing readable)."""
    from kasmina_edge.ecg.quality import quality_track

    x = np.asarray(sig, dtype=np.float64)
    if x.shape[0] < int(fs) or not np.all(np.isfinite(x)):
        return 0.0
    track = quality_track(x, fs, np.asarray(r_peaks, dtype=np.int64), window_s=x.shape[0] / fs + 1.0)
    ratio = float(track.ratio[0]) if track.ratio.size else 0.0
    return ratio if np.isfinite(ratio) else 100.0


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


def site_drift(mean: np.ndarray, ref: SiteStats) -> float:
    """Mean over channels of |μ − μ_ref| over the pooled reference σ (the host's definition)."""
    return float(np.mean(np.abs(mean - ref.mean)) / (float(ref.std.mean()) + 1e-6))


class RawBuffer:
    """The last ``seconds`` of one lead's raw samples, with their absolute sample numbers."""

    def __init__(self, fs: float, seconds: float = 4.0) -> None:
        self.fs = fs
        self.capacity = int(round(seconds * fs))
        self._buf = np.zeros(self.capacity, dtype=np.float32)
        self.count = 0  # samples seen so far; the buffer holds [count - filled, count)

    @property
    def filled(self) -> int:
        return min(self.count, self.capacity)

    def push(self, samples: np.ndarray) -> None:
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        n = x.shape[0]
        if n >= self.capacity:
            self._buf[:] = x[-self.capacity :]
        elif n:
            self._buf[:-n] = self._buf[n:]
            self._buf[-n:] = x
        self.count += n

    def view(self) -> tuple[np.ndarray, int]:
        """(samples in order, absolute index of the first one)."""
        k = self.filled
        return self._buf[self.capacity - k :], self.count - k


@dataclass
class SiteAccumulator:
    """Running (exponential) per-channel mean and mean square of a site's activation."""

    decay: float = 0.8  # ~5 windows: drift must follow a condition within a few beats
    mean: np.ndarray | None = None
    meansq: np.ndarray | None = None
    n: int = 0

    def update(self, mean: np.ndarray | None, meansq: np.ndarray | None) -> None:
        if mean is None or meansq is None:
            return
        if self.mean is None or self.meansq is None:
            self.mean, self.meansq = mean.astype(np.float64), meansq.astype(np.float64)
        else:
            self.mean = self.decay * self.mean + (1 - self.decay) * mean
            self.meansq = self.decay * self.meansq + (1 - self.decay) * meansq
        self.n += 1


@dataclass
class ReferenceCollector:
    """Clean-signal statistics gathered on the device when the bundle carries none (first windows)."""

    vectors: list[np.ndarray] = field(default_factory=list)
    beats: list[np.ndarray] = field(default_factory=list)
    site_sum: list[np.ndarray] = field(default_factory=list)
    site_sumsq: list[np.ndarray] = field(default_factory=list)
    site_n: int = 0

    def add_sites(self, means: list[np.ndarray | None], meansqs: list[np.ndarray | None]) -> None:
        if any(m is None for m in means) or any(m is None for m in meansqs):
            return
        if not self.site_sum:
            self.site_sum = [np.zeros_like(m, dtype=np.float64) for m in means if m is not None]
            self.site_sumsq = [np.zeros_like(m, dtype=np.float64) for m in meansqs if m is not None]
        for i, (m, q) in enumerate(zip(means, meansqs, strict=True)):
            assert m is not None and q is not None
            self.site_sum[i] += m
            self.site_sumsq[i] += q
        self.site_n += 1

    def site_stats(self) -> list[SiteStats]:
        out = []
        for s, q in zip(self.site_sum, self.site_sumsq, strict=True):
            mean = s / max(self.site_n, 1)
            var = np.maximum(q / max(self.site_n, 1) - mean * mean, 0.0)
            out.append(SiteStats(mean=mean, std=np.sqrt(var)))
        return out


def observation_vector(
    signal: SignalFeatures,
    pred_entropy: float,
    drift: list[float],
    *,
    battery: float = 1.0,
    link_state: float = 1.0,
    security_alert: bool = False,
    live_seeds: float = 0.0,
    plateau: bool = True,
    calibration: bool = False,
) -> np.ndarray:
    """The 16 features in the policy's order (drift scaled by 1/4 and clipped to [0, 2] as on the host)."""
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
    return v


class RecentProbs:
    """The last ``n`` windows' class probabilities (for entropy and confidence)."""

    def __init__(self, n: int = 8) -> None:
        self._rows: deque[np.ndarray] = deque(maxlen=n)

    def add(self, probs: np.ndarray) -> None:
        if np.all(np.isfinite(probs)):
            self._rows.append(probs)

    def __len__(self) -> int:
        return len(self._rows)

    def entropy(self) -> float:
        return prediction_entropy(np.stack(self._rows)) if self._rows else 0.0

    def confidence(self) -> float:
        return float(np.mean([r.max() for r in self._rows])) if self._rows else 1.0
