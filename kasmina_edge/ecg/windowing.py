"""Beat windowing shared by host training and the on-device runtime.

Training (batch) and the runtime (streaming) must feed the network the same numbers, so
both paths go through the same pieces:

- :class:`Preprocessor`: a causal, linear-phase FIR band-pass (0.5-40 Hz) with a constant,
  known delay. ``process(chunk)`` (streaming) and ``apply(signal)`` (batch) compute every
  output sample as the same dot product over the same raw samples (``np.convolve`` over a
  carried history), so their outputs are bit-identical, however the stream is chunked.
- :func:`rr_features`: four RR features per beat, all causal except post-RR.
- :func:`extract_windows`: fixed windows around R peaks with a per-window normalisation.
- :class:`StreamingBeatizer`: raw chunks in, ``Beat`` objects out (preprocessing and QRS
  detection online), equal to the batch path on the same R peaks.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
from scipy.signal import firwin

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.ecg.types import DEFAULT_FS

# Per-window normalisation: divide by the 99th percentile of |window - median| (a robust
# peak amplitude that a single spike cannot set), never by less than this (mV), so that a
# flat window (lead off) is not blown up into noise of unit amplitude.
NORM_FLOOR_MV = 0.05
NORM_PERCENTILE = 99.0
_NORM_Q = NORM_PERCENTILE / 100.0  # as np.percentile divides it

RR_LOCAL_BEATS = 10  # local mean RR: the last 10 beats' pre-RR, this beat included
RR_PATIENT_SECONDS = 300.0  # running patient mean RR: pre-RR of beats in the last 5 minutes
DEFAULT_RR_S = 0.8  # used only when a stream has a single beat (no interval at all)
MAX_LAG_S = 30.0  # the streaming path keeps at most this much filtered signal behind its frontier


@dataclass(frozen=True)
class WindowSpec:
    """A beat window: ``before`` samples before the R peak, ``after`` from it on (R at index ``before``)."""

    fs: float = DEFAULT_FS
    before: int = 90
    after: int = 166

    @property
    def length(self) -> int:
        return self.before + self.after


@dataclass
class BeatWindows:
    """Batch windows. Invalid windows (reaching past either end of the signal) are all zeros."""

    windows: np.ndarray  # float32 (n, 1, length)
    rr: np.ndarray  # float32 (n, 4)
    r_peaks: np.ndarray  # int64 (n,)
    valid: np.ndarray  # bool (n,)

    def __len__(self) -> int:
        return int(self.r_peaks.shape[0])


@dataclass
class Beat:
    """One beat out of the streaming path."""

    r_peak: int
    window: np.ndarray  # float32 (1, length)
    rr: np.ndarray  # float32 (4,)
    valid: bool


class Preprocessor:
    """Causal linear-phase FIR band-pass; output sample ``n`` describes input sample ``n - delay``.

    ``apply`` returns the *aligned* signal (index = input index): the causal output shifted
    back by ``delay``; its last ``delay`` samples are computed as if the last input sample
    were held, which is what the streaming ``flush()`` does at the end of a stream.
    The filter starts from the steady state of the first sample (no start-up step).
    Response (2 s of taps, Hamming): -6 dB at 0.5 and 40 Hz, 0.17 at 0.1 Hz, ~1 from 2 to
    35 Hz, < 0.001 above 45 Hz (so 50/60 Hz mains is removed as well).
    """

    def __init__(
        self, fs: float = DEFAULT_FS, low_hz: float = 0.5, high_hz: float = 40.0, seconds: float = 1.0
    ) -> None:
        if not np.isfinite(fs) or fs < 50.0:
            raise KasminaError(f"sample rate {fs} Hz is not supported by the preprocessor (need >= 50 Hz)")
        self.fs = float(fs)
        self._design = (low_hz, high_hz, seconds)
        # 2 s of taps at any rate: ~1.6 Hz transition width (Hamming), so 0.5 Hz is reached
        # without eating the T wave; the delay (1 s) is the price of linear phase.
        self.delay = int(round(seconds * self.fs))
        numtaps = 2 * self.delay + 1
        self.taps = firwin(numtaps, [low_hz, min(high_hz, 0.45 * self.fs)], pass_zero=False, fs=self.fs)
        self._history: np.ndarray | None = None  # last numtaps - 1 raw samples
        self._last = 0.0

    @property
    def numtaps(self) -> int:
        return int(self.taps.shape[0])

    def reset(self) -> None:
        self._history = None

    def process(self, chunk: np.ndarray) -> np.ndarray:
        """Filter the next raw samples; returns as many *causal* output samples (float64)."""
        x = np.asarray(chunk, dtype=np.float64).reshape(-1)
        if x.size == 0:
            return np.zeros(0)
        if self._history is None:
            # Steady state for a constant first sample: as if it had always been there.
            self._history = np.full(self.numtaps - 1, x[0])
        buf = np.concatenate([self._history, x])
        self._history = buf[-(self.numtaps - 1):]
        self._last = float(x[-1])
        return np.convolve(buf, self.taps, mode="valid")

    def flush(self) -> np.ndarray:
        """The last ``delay`` causal outputs, holding the last input sample (end of stream)."""
        if self._history is None:
            return np.zeros(0)
        return self.process(np.full(self.delay, self._last))

    def apply(self, signal: np.ndarray) -> np.ndarray:
        """Batch: the aligned filtered signal (float64, same length as ``signal``)."""
        x = np.asarray(signal, dtype=np.float64).reshape(-1)
        if x.size == 0:
            return np.zeros(0)
        twin = Preprocessor(self.fs, *self._design)  # fresh state: batch never disturbs a stream
        causal = np.concatenate([twin.process(x), twin.flush()])
        return causal[self.delay:]


def rr_features(r_peaks: np.ndarray, fs: float) -> np.ndarray:
    """(n, 4) float32: [pre-RR s, post-RR s, local mean RR s, pre-RR / running patient mean RR].

    pre-RR of the first beat is its post-RR and post-RR of the last beat its pre-RR (a
    stream has nothing better); local mean = mean pre-RR over the last ``RR_LOCAL_BEATS``
    beats including this one; patient mean = mean pre-RR over beats within the last
    ``RR_PATIENT_SECONDS`` (causal).
    """
    r = np.asarray(r_peaks, dtype=np.int64).reshape(-1)
    n = r.shape[0]
    out = np.zeros((n, 4), dtype=np.float64)
    if n == 0:
        return out.astype(np.float32)
    if n == 1:
        pre = post = np.array([DEFAULT_RR_S])
    else:
        d = np.diff(r).astype(np.float64) / fs
        pre = np.concatenate([d[:1], d])
        post = np.concatenate([d, d[-1:]])
    csum = np.concatenate([[0.0], np.cumsum(pre)])
    idx = np.arange(n)
    lo_local = np.maximum(idx - (RR_LOCAL_BEATS - 1), 0)
    local = (csum[idx + 1] - csum[lo_local]) / (idx + 1 - lo_local)
    lo_patient = np.searchsorted(r, r - int(round(RR_PATIENT_SECONDS * fs)), side="right")
    patient = (csum[idx + 1] - csum[lo_patient]) / (idx + 1 - lo_patient)
    out[:, 0], out[:, 1], out[:, 2], out[:, 3] = pre, post, local, pre / patient
    return out.astype(np.float32)


def normalise_windows(windows: np.ndarray) -> np.ndarray:
    """Per window: subtract the median, divide by max(P99 of |deviation|, NORM_FLOOR_MV).

    The very numbers of ``np.median`` and ``np.percentile(..., 99)`` (linear interpolation), from one
    ``np.partition`` each at the order statistics they read: the streaming path normalises one window per
    beat, and those two functions' general machinery cost several times the selection itself."""
    w = np.asarray(windows, dtype=np.float64)
    n = w.shape[-1] if w.ndim else 0
    if n < 2:  # numpy's edge cases (a single sample: both bounds are the last element)
        med = np.median(w, axis=-1, keepdims=True)
        dev = w - med
        scale = np.maximum(np.percentile(np.abs(dev), NORM_PERCENTILE, axis=-1, keepdims=True), NORM_FLOOR_MV)
        return (dev / scale).astype(np.float32)
    half = n // 2
    if n % 2:
        med = np.partition(w, half, axis=-1)[..., half : half + 1]
    else:  # np.median: the mean of the two middle values, (a + b) / 2
        part = np.partition(w, (half - 1, half), axis=-1)
        med = (part[..., half - 1 : half] + part[..., half : half + 1]) / 2.0
    dev = w - med
    # np.percentile's "linear" method: virtual index (n - 1) q between order statistics lo and lo + 1,
    # interpolated with numpy's own two-sided lerp formula (so the rounding is the same)
    virtual = (n - 1) * _NORM_Q
    lo = int(np.floor(virtual))
    gamma = virtual - lo
    ordered = np.partition(np.abs(dev), (lo, lo + 1), axis=-1)
    a, b = ordered[..., lo : lo + 1], ordered[..., lo + 1 : lo + 2]
    diff = b - a
    p99 = b - diff * (1.0 - gamma) if gamma >= 0.5 else a + diff * gamma
    return (dev / np.maximum(p99, NORM_FLOOR_MV)).astype(np.float32)


def extract_windows(filtered_signal: np.ndarray, r_peaks: np.ndarray, spec: WindowSpec) -> BeatWindows:
    """Windows of the aligned filtered signal around each R peak (same sample index)."""
    x = np.asarray(filtered_signal, dtype=np.float64).reshape(-1)
    r = np.asarray(r_peaks, dtype=np.int64).reshape(-1)
    n = r.shape[0]
    valid = (r - spec.before >= 0) & (r + spec.after <= x.shape[0])
    windows = np.zeros((n, 1, spec.length), dtype=np.float32)
    if np.any(valid):
        starts = r[valid] - spec.before
        raw = x[starts[:, None] + np.arange(spec.length)[None, :]]
        windows[valid, 0, :] = normalise_windows(raw)
    return BeatWindows(windows=windows, rr=rr_features(r, spec.fs), r_peaks=r, valid=valid)


class _RecentRR:
    """The pre-RR intervals of the beats of the last ``RR_PATIENT_SECONDS``, as one contiguous float64 view
    (the running means read it once per beat: no list rebuilt, no deque walked)."""

    def __init__(self, capacity: int = 1024) -> None:
        self._r = np.zeros(capacity, dtype=np.int64)
        self._pre = np.zeros(capacity, dtype=np.float64)
        self._head = 0  # first beat still inside the horizon
        self._end = 0

    def add(self, r: int, pre_s: float, horizon: int) -> np.ndarray:
        """Append a beat, forget those at or before ``horizon``; the pre-RR values kept, oldest first."""
        if self._end == self._r.shape[0]:  # full: drop what the horizon left behind, grow if still full
            keep = self._end - self._head
            size = self._r.shape[0] * (2 if keep > self._r.shape[0] // 2 else 1)
            peaks, pres = np.zeros(size, dtype=np.int64), np.zeros(size, dtype=np.float64)
            peaks[:keep], pres[:keep] = self._r[self._head : self._end], self._pre[self._head : self._end]
            self._r, self._pre, self._head, self._end = peaks, pres, 0, keep
        self._r[self._end], self._pre[self._end] = r, pre_s
        self._end += 1
        while self._head < self._end and self._r[self._head] <= horizon:
            self._head += 1
        return self._pre[self._head : self._end]


class StreamingBeatizer:
    """Raw sample chunks in, beats out: the runtime's view of :func:`extract_windows`.

    Each beat is emitted once its post-RR is known, i.e. when the *next* R peak has been
    detected (a beat is always emitted one beat late), and once the aligned filtered
    signal covers its whole window. ``flush()`` ends the stream like the batch path does.
    """

    def __init__(self, fs: float = DEFAULT_FS, spec: WindowSpec | None = None, lead: int = 0) -> None:
        from kasmina_edge.ecg.qrs import QrsDetector  # qrs imports nothing from here; kept local for clarity

        self.fs = float(fs)
        self.spec = spec or WindowSpec()  # the model's: 360 Hz; another rate needs its own spec
        if abs(self.spec.fs - self.fs) > 1e-9:
            raise KasminaError(f"window spec is for {self.spec.fs} Hz but the stream is {self.fs} Hz")
        self.lead = lead
        self.pre = Preprocessor(self.fs)
        self.detector = QrsDetector(self.fs)
        self._aligned = np.zeros(0)  # aligned filtered samples [self._aligned_start, ...)
        self._aligned_start = 0
        self._causal_seen = 0  # causal outputs produced so far
        self._pending: deque[int] = deque()  # detected R peaks not emitted yet
        self._prev: int | None = None  # last emitted R peak (for pre-RR)
        self._history = _RecentRR()  # (r, pre-RR s) of emitted beats, last 5 min
        self._finished = False
        self._last_detected = -1

    def _select(self, chunk: np.ndarray) -> np.ndarray:
        a = np.asarray(chunk)
        if a.ndim == 2:
            a = a[:, self.lead]
        return a.reshape(-1)

    def _add_aligned(self, causal: np.ndarray) -> None:
        # causal output k is aligned sample k - delay; the first `delay` outputs describe
        # samples before the stream began and are dropped.
        drop = max(0, self.pre.delay - self._causal_seen)
        self._causal_seen += causal.shape[0]
        if drop < causal.shape[0]:
            self._aligned = np.concatenate([self._aligned, causal[drop:]])

    @property
    def _aligned_end(self) -> int:
        return self._aligned_start + int(self._aligned.shape[0])

    def process(self, chunk: np.ndarray) -> list[Beat]:
        x = self._select(chunk)
        if not np.all(np.isfinite(x)):
            bad = int(np.flatnonzero(~np.isfinite(x))[0])
            raise KasminaError(f"non-finite sample (NaN/inf) at chunk offset {bad}")
        self._note(self.detector.process(x))
        self._add_aligned(self.pre.process(x))
        return self._emit(final=False)

    def flush(self) -> list[Beat]:
        if self._finished:
            return []
        self._finished = True
        self._note(self.detector.flush())
        self._add_aligned(self.pre.flush())
        return self._emit(final=True)

    def _note(self, peaks: list[int]) -> None:
        self._pending.extend(peaks)
        if peaks:
            self._last_detected = peaks[-1]

    def _rr_row(self, r: int, post_s: float) -> np.ndarray:
        pre_s = (r - self._prev) / self.fs if self._prev is not None else post_s
        pres = self._history.add(r, pre_s, r - int(round(RR_PATIENT_SECONDS * self.fs)))
        # np.mean of a float64 vector is its pairwise sum over its count: the same numbers from the view
        local = float(np.add.reduce(pres[-RR_LOCAL_BEATS:]) / min(RR_LOCAL_BEATS, pres.shape[0]))
        patient = float(np.add.reduce(pres) / pres.shape[0])
        self._prev = r
        return np.array([pre_s, post_s, local, pre_s / patient], dtype=np.float32)

    def _emit(self, final: bool) -> list[Beat]:
        beats: list[Beat] = []
        spec = self.spec
        while self._pending:
            r = self._pending[0]
            if len(self._pending) >= 2:
                post_s = (self._pending[1] - r) / self.fs
            elif final:
                post_s = (r - self._prev) / self.fs if self._prev is not None else DEFAULT_RR_S
            else:
                break  # post-RR needs the next beat
            end = r + spec.after
            if end > self._aligned_end and not final:
                break  # the filter (delay) has not produced this window yet
            self._pending.popleft()
            start = r - spec.before
            # start < _aligned_start only for a beat detected > MAX_LAG_S late (see _trim).
            valid = start >= max(0, self._aligned_start) and end <= self._aligned_end
            window = np.zeros((1, spec.length), dtype=np.float32)
            if valid:
                seg = self._aligned[start - self._aligned_start: end - self._aligned_start]
                window[0] = normalise_windows(seg[None, :])[0]
            beats.append(Beat(r_peak=int(r), window=window, rr=self._rr_row(int(r), post_s), valid=valid))
        self._trim()
        return beats

    def _trim(self) -> None:
        # A future R peak comes after the last one detected (peaks are strictly increasing),
        # so nothing before it (minus the window's lead) is needed; memory is bounded by MAX_LAG_S.
        floor = self._pending[0] if self._pending else self._last_detected + 1
        keep_from = max(
            self._aligned_start,
            min(floor, self._aligned_end) - self.spec.before,
            self._aligned_end - int(MAX_LAG_S * self.fs),
        )
        if keep_from > self._aligned_start:
            self._aligned = self._aligned[keep_from - self._aligned_start:]
            self._aligned_start = keep_from
