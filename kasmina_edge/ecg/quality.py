"""Signal quality along a record: where the QRS complexes can be read, and where they cannot.

The index is a local in-band SNR, measured with the detector's own beats: per 5 s window,
the median QRS peak of the 5-25 Hz band (|band| within +/-50 ms of each detected R) over the
RMS of the same band away from them (beyond +/-100 ms). Clean MIT-BIH windows sit at 10-30;
real muscle noise (NSTDB ``ma``) pulls the median to ~8 at 0 dB SNR and ~5 at -6 dB, where
beats and noise bursts look alike. A window under :data:`READABLE_MIN_RATIO` is *unreadable*: its beats are
reported as ``Q`` (AAMI "unclassifiable") instead of being guessed. A window without any
detected beat is unreadable too (flat line, lead off, or noise the detector gave up on).

The threshold is calibrated on clean signal only: the largest value that flags at most
:data:`CLEAN_FLAG_BUDGET` of clean beats (``tools/bench_ecg.py`` repeats this leave-one-record-out
on the DS1 records and reports the held-out figures). Windows are a fixed grid from sample 0,
so the same samples get the same verdict however the signal is chunked.

Written by hand on top of scipy's filters: no library ships a beat-level readability flag
for a streaming detector (bSQI-style indices need a second detector, which halves the speed).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.signal import butter, sosfiltfilt

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.ecg.types import AAMI_INDEX, Beats

WINDOW_S = 5.0
PEAK_HALF_S = 0.05  # a QRS peak: max |band| within +/- this of the R peak
FLOOR_GAP_S = 0.10  # the floor: band RMS beyond +/- this of every detected R peak
# Calibrated on the 22 DS1 records, whole (tools/bench_ecg.py --only-noise --noise-minutes 31 prints it as
# "readability threshold (all records' clean minutes)"; its JSON holds the leave-one-record-out values):
# the largest ratio that flags <= CLEAN_FLAG_BUDGET of clean beats. MIT-BIH's own noisy minutes (203, 207)
# pull it down from 6.8 (minutes 5-13 only) to 5.0.
READABLE_MIN_RATIO = 5.0
CLEAN_FLAG_BUDGET = 0.001


@lru_cache(maxsize=16)
def _qrs_band_sos(fs: float) -> np.ndarray:
    # designed once per rate: the runtime asks for the band on every controller tick
    return np.asarray(butter(2, [5.0, min(25.0, 0.45 * fs)], btype="bandpass", fs=fs, output="sos"))


def qrs_band(x: np.ndarray, fs: float) -> np.ndarray:
    """The 5-25 Hz band where QRS complexes carry their power (zero phase, 2nd-order Butterworth)."""
    sos = _qrs_band_sos(float(fs))
    x = np.asarray(x, dtype=np.float64)
    return sosfiltfilt(sos, x) if x.shape[0] > 15 else x - x.mean() if x.size else x


@dataclass(frozen=True)
class QualityTrack:
    """The readability index per window of ``window`` samples (window i covers [i*window, (i+1)*window))."""

    fs: float
    window: int
    ratio: np.ndarray  # QRS peak / in-band floor per window; 0 where no beat was detected
    threshold: float

    @property
    def readable(self) -> np.ndarray:
        return self.ratio >= self.threshold

    def readable_at(self, samples: np.ndarray) -> np.ndarray:
        """Whether each sample index lies in a readable window."""
        idx = np.clip(np.asarray(samples, dtype=np.int64) // self.window, 0, max(self.ratio.size - 1, 0))
        return self.readable[idx] if self.ratio.size else np.zeros(idx.shape, dtype=bool)

    def unreadable_spans(self) -> list[tuple[int, int]]:
        """Merged [start, end) sample spans of unreadable windows."""
        bad = ~self.readable
        spans: list[tuple[int, int]] = []
        for i in np.flatnonzero(bad).tolist():
            a, b = i * self.window, (i + 1) * self.window
            if spans and spans[-1][1] == a:
                spans[-1] = (spans[-1][0], b)
            else:
                spans.append((a, b))
        return spans

    def unreadable_fraction(self) -> float:
        return float(np.mean(~self.readable)) if self.ratio.size else 0.0


def quality_track(x: np.ndarray, fs: float, peaks: np.ndarray, window_s: float = WINDOW_S,
                  threshold: float = READABLE_MIN_RATIO) -> QualityTrack:
    """:class:`QualityTrack` of one lead, given the detector's R peaks (sample indices)."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(x)):
        raise KasminaError("signal quality: the signal has NaN/inf samples")
    if window_s <= 0 or not np.isfinite(threshold):
        raise KasminaError(f"signal quality: window_s must be > 0 and threshold finite (got {window_s}, {threshold})")
    n = x.shape[0]
    w = max(1, int(round(window_s * fs)))
    n_win = max(1, -(-n // w)) if n else 0
    if n_win == 0:
        return QualityTrack(fs, w, np.zeros(0), threshold)
    band = np.abs(qrs_band(x, fs))
    p = np.asarray(peaks, dtype=np.int64).reshape(-1)
    p = p[(p >= 0) & (p < n)]
    h, g = max(1, int(round(PEAK_HALF_S * fs))), max(1, int(round(FLOOR_GAP_S * fs)))
    # QRS peak heights: max |band| in [r - h, r + h] (a running maximum, then read at each R)
    if p.size:
        from scipy.ndimage import maximum_filter1d

        heights = maximum_filter1d(band, size=2 * h + 1, mode="nearest")[p]
    else:
        heights = np.zeros(0)
    # floor: |band|^2 away from every R (a coverage count from a difference array, no Python loop)
    cover = np.zeros(n + 1, dtype=np.int64)
    np.add.at(cover, np.clip(p - g, 0, n), 1)
    np.add.at(cover, np.clip(p + g + 1, 0, n), -1)
    away = np.cumsum(cover[:-1]) == 0
    sq = np.where(away, band * band, 0.0)
    pad = n_win * w - n
    sq_w = np.pad(sq, (0, pad)).reshape(n_win, w).sum(axis=1)
    cnt_w = np.pad(away.astype(np.int64), (0, pad)).reshape(n_win, w).sum(axis=1)
    floor = np.sqrt(sq_w / np.maximum(cnt_w, 1))
    ratio = np.zeros(n_win)
    win_of = p // w
    for i in np.unique(win_of).tolist():  # one median per window with beats (~ n_seconds / 5 of them)
        med = float(np.median(heights[win_of == i]))
        ratio[i] = med / floor[i] if floor[i] > 0 and cnt_w[i] > 10 else (np.inf if med > 0 else 0.0)
    return QualityTrack(float(fs), w, ratio, float(threshold))


@dataclass(frozen=True)
class QrsResult:
    """R peaks with a readability flag per beat (False: report the beat as Q, unreadable)."""

    peaks: np.ndarray
    readable: np.ndarray
    track: QualityTrack

    def as_beats(self, classes: np.ndarray | None = None) -> Beats:
        """Beats whose class is ``classes`` (default N) where readable and Q where not."""
        cls = (np.full(self.peaks.shape[0], AAMI_INDEX["N"], dtype=np.int8) if classes is None
               else np.asarray(classes, dtype=np.int8).copy())
        if cls.shape != self.peaks.shape:
            raise KasminaError(f"classes has {cls.shape[0]} entries for {self.peaks.shape[0]} beats")
        cls[~self.readable] = AAMI_INDEX["Q"]
        return Beats(self.peaks.copy(), cls)


def detect_qrs_with_quality(x: np.ndarray, fs: float, threshold: float = READABLE_MIN_RATIO) -> QrsResult:
    """:func:`kasmina_edge.ecg.qrs.detect_qrs` plus the readability of each beat."""
    from kasmina_edge.ecg.qrs import detect_qrs

    peaks = detect_qrs(x, fs)
    track = quality_track(x, fs, peaks, threshold=threshold)
    return QrsResult(peaks, track.readable_at(peaks), track)


def calibrate_threshold(clean_ratios: np.ndarray, clean_beats: np.ndarray,
                        budget: float = CLEAN_FLAG_BUDGET) -> float:
    """The largest threshold that flags at most ``budget`` of the beats of clean windows.

    ``clean_ratios`` and ``clean_beats``: per clean window, its ratio and its number of reference beats.
    """
    r = np.asarray(clean_ratios, dtype=np.float64)
    b = np.asarray(clean_beats, dtype=np.float64)
    if r.size == 0 or b.sum() <= 0:
        raise KasminaError("calibrate_threshold: no clean windows with beats")
    order = np.argsort(r, kind="stable")
    flagged = np.cumsum(b[order]) / b.sum()  # share of beats flagged when windows order[0..i] are
    ok = np.flatnonzero(flagged <= budget)
    if ok.size == 0:
        return float(r[order[0]])  # ratio < the smallest clean ratio: nothing clean is flagged
    nxt = ok[-1] + 1  # a threshold at the next window's ratio flags exactly order[0..ok[-1]] (ties aside)
    return float(r[order[nxt]]) if nxt < r.size else float(r.max()) + 1.0
