"""Measurements the ECG tests make on generated signals."""

from __future__ import annotations

import numpy as np


def qrs_width_ms(signal: np.ndarray, r: int, fs: float, frac: float = 0.1) -> float:
    """QRS duration across leads: the span around R where the spatial slope (norm of the
    per-lead derivatives) stays above ``frac`` of its maximum (gaps under 20 ms bridged)."""
    h = int(0.15 * fs)
    seg = signal[r - h: r + h + 1].astype(np.float64)
    slope = np.sqrt((np.gradient(seg, axis=0) ** 2).sum(axis=1)) * fs
    c = int(0.06 * fs)
    peak = h - c + int(np.argmax(slope[h - c: h + c]))
    above = slope > frac * slope.max()
    gap = int(0.02 * fs)
    lo = peak
    while lo > 0 and above[max(0, lo - gap): lo].any():
        lo -= 1
    hi = peak
    while hi < len(slope) - 1 and above[hi + 1: hi + 1 + gap].any():
        hi += 1
    return (hi - lo) / fs * 1000.0
