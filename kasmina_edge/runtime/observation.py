"""What the device gathers for Tamiyo's observation (:mod:`kasmina_edge.core.features`) as the signal streams.

The last few seconds of raw signal (a ring buffer), running per-site activation statistics, the clean
reference a bundle without one measures on its first windows, the recent class probabilities, and the
signal quality index that corroborates a signal symptom. The engine feeds them per window; the features
themselves are computed by the same code the host trains on.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from kasmina_edge.core.features import SiteStats

ENTROPY_EPS = 1e-12  # core.features' epsilon in prediction_entropy (checked against it in tests/runtime)


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


class RecentProbs:
    """The last ``n`` windows' class probabilities (for entropy and confidence).

    Each row's entropy is computed once, when it arrives, with :func:`prediction_entropy`'s own arithmetic
    (a row's sum does not depend on the rows beside it); ``entropy()`` only averages the last ``n``."""

    def __init__(self, n: int = 8) -> None:
        self._rows: deque[np.ndarray] = deque(maxlen=n)
        self._row_entropy: deque[float] = deque(maxlen=n)

    def add(self, probs: np.ndarray) -> None:
        if np.all(np.isfinite(probs)):
            self._rows.append(probs)
            p = np.clip(np.asarray(probs, dtype=np.float64).reshape(-1), ENTROPY_EPS, 1.0)
            self._row_entropy.append(float(-(p * np.log(p)).sum()))

    def __len__(self) -> int:
        return len(self._rows)

    def entropy(self) -> float:
        if not self._rows:
            return 0.0
        k = int(np.asarray(self._rows[0]).shape[-1])
        return float(np.mean(np.array(self._row_entropy)) / np.log(k))

    def confidence(self) -> float:
        return float(np.mean([r.max() for r in self._rows])) if self._rows else 1.0
