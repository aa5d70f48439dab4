"""Summary statistics of a record: heart rate, HRV, beat classes, QRS detector Se/+P.

Heart rate and HRV are computed on the reference beats when the record has them (else on
the detector's): HRV uses normal-to-normal intervals (both beats N, when classes are known),
between 0.3 and 2.0 s; SDNN is their standard deviation, RMSSD the root mean square of
successive differences, pNN50 the share of successive differences over 50 ms (%).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from kasmina_edge.ecg.beat_match import match_beats, sensitivity_ppv
from kasmina_edge.ecg.qrs import detect_qrs
from kasmina_edge.ecg.quality import qrs_band
from kasmina_edge.ecg.types import AAMI_INDEX, ARTIFACT_BITS, Record

NN_MIN_S, NN_MAX_S = 0.3, 2.0

# What a plausible ECG shows (measured on MIT-BIH 100/203/208 and the synthetic scenarios, noisy ones included,
# against a sine, a square wave, white noise and NSTDB's muscle and baseline-wander noise records):
QRS_KURTOSIS_MIN = 5.0  # the 5-25 Hz band is peaky (QRS complexes): ECG 10-20; sine 1.5, noise 3, wander 4.9
QRS_BAND_MIN = 0.1  # share of the signal's power (above 0.5 Hz) in 5-25 Hz: ECG 0.24-0.6; sine 1e-5, square 0.07
BEAT_SIMILARITY_MIN = 0.5  # median correlation of each detected beat with the median beat: ECG ≥ 0.98, noise ≤ 0.2


@dataclass
class EcgStats:
    name: str
    fs: float
    seconds: float
    beats_from: str  # "annotations" or "detector"
    n_beats: int
    heart_rate_bpm: float | None
    sdnn_ms: float | None
    rmssd_ms: float | None
    pnn50: float | None
    class_counts: dict[str, int] | None
    n_detected: int
    detector_tp: int | None = None
    detector_fp: int | None = None
    detector_fn: int | None = None
    detector_se: float | None = None
    detector_ppv: float | None = None
    artifact_fraction: dict[str, float] = field(default_factory=dict)
    conditions: list[dict[str, Any]] = field(default_factory=list)
    signal_quality: dict[str, Any] = field(default_factory=dict)  # SignalQuality.to_dict()

    def to_dict(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def hrv(r_peaks: np.ndarray, fs: float, normal: np.ndarray | None = None
        ) -> tuple[float | None, float | None, float | None, float | None]:
    """(mean HR bpm, SDNN ms, RMSSD ms, pNN50 %) from R peaks; None where there are too few intervals."""
    r = np.asarray(r_peaks, dtype=np.int64)
    if r.size < 2:
        return None, None, None, None
    rr = np.diff(r) / fs
    ok = (rr >= NN_MIN_S) & (rr <= NN_MAX_S)
    if normal is not None:
        ok &= normal[:-1] & normal[1:]
    hr = 60.0 / float(np.mean(rr)) if rr.size else None
    nn = rr[ok]
    if nn.size < 2:
        return hr, None, None, None
    sdnn = float(np.std(nn, ddof=1)) * 1000.0
    # successive differences only between adjacent NN intervals
    adjacent = ok[:-1] & ok[1:]
    d = np.diff(rr)[adjacent]
    if d.size == 0:
        return hr, sdnn, None, None
    rmssd = float(np.sqrt(np.mean(d * d))) * 1000.0
    pnn50 = float(np.mean(np.abs(d) > 0.05)) * 100.0
    return hr, sdnn, rmssd, pnn50


@dataclass(frozen=True)
class SignalQuality:
    """Whether the signal looks like an ECG at all (beats and heart rate of a sine wave or of noise are
    numbers about nothing): QRS-band peakiness, QRS-band power share, beat-to-beat similarity."""

    qrs_kurtosis: float
    qrs_band_fraction: float
    beat_similarity: float | None  # None: fewer than 3 beats detected
    problems: tuple[str, ...]

    @property
    def plausible(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"plausible_ecg": self.plausible, "qrs_kurtosis": round(self.qrs_kurtosis, 2),
                "qrs_band_fraction": round(self.qrs_band_fraction, 4),
                "beat_similarity": None if self.beat_similarity is None else round(self.beat_similarity, 3),
                "problems": list(self.problems)}  # fmt: skip


def signal_quality(x: np.ndarray, fs: float, detected: np.ndarray) -> SignalQuality:
    """:class:`SignalQuality` of one lead, with the QRS detector's beats (sample indices)."""
    from scipy import signal as sps
    from scipy import stats as spstats

    x = np.asarray(x, dtype=np.float64)
    if x.size < int(2 * fs) or not np.isfinite(x).all() or float(np.std(x)) < 1e-9:
        return SignalQuality(0.0, 0.0, None, ("the signal is flat or shorter than 2 s",))
    band = qrs_band(x, fs)  # the same band the per-window readability flag uses
    high = sps.sosfiltfilt(sps.butter(2, 0.5, btype="high", fs=fs, output="sos"), x)
    w = int(10 * fs)  # per 10 s, so a noisy stretch does not speak for the whole record
    kurt = float(np.median([spstats.kurtosis(band[i : i + w], fisher=False) for i in range(0, max(1, band.size - w + 1), w)]))
    share = float(np.sum(band**2) / max(float(np.sum(high**2)), 1e-12))
    h = int(0.1 * fs)
    peaks = np.asarray(detected, dtype=np.int64)
    peaks = peaks[(peaks > h) & (peaks < x.size - h)][:2000]
    similarity = None
    if peaks.size >= 3:
        beats = np.stack([band[p - h : p + h] for p in peaks])
        med = np.median(beats, axis=0)
        bc, mc = beats - beats.mean(axis=1, keepdims=True), med - med.mean()
        denom = np.linalg.norm(bc, axis=1) * max(float(np.linalg.norm(mc)), 1e-12)
        similarity = float(np.median((bc @ mc) / np.maximum(denom, 1e-12)))
    problems = []
    if kurt < QRS_KURTOSIS_MIN:
        problems.append(f"no sharp QRS complexes (5-25 Hz kurtosis {kurt:.1f} < {QRS_KURTOSIS_MIN:g})")
    if share < QRS_BAND_MIN:
        problems.append(f"{100 * share:.1f} % of the power in the QRS band (< {100 * QRS_BAND_MIN:g} %)")
    if similarity is not None and similarity < BEAT_SIMILARITY_MIN:
        problems.append(f"the detected beats do not look alike (similarity {similarity:.2f} < {BEAT_SIMILARITY_MIN:g})")
    return SignalQuality(kurt, share, similarity, tuple(problems))


def compute_stats(record: Record, lead: int = 0) -> EcgStats:
    detected = detect_qrs(record.lead(lead), record.fs)
    ref = record.beats if record.beats is not None and len(record.beats) else None
    if ref is not None:
        peaks, normal = ref.samples, ref.classes == AAMI_INDEX["N"]
    else:
        peaks, normal = detected, None
    hr, sdnn, rmssd, pnn50 = hrv(peaks, record.fs, normal)
    stats = EcgStats(
        name=record.name, fs=record.fs, seconds=round(record.seconds, 3),
        beats_from="annotations" if ref is not None else "detector", n_beats=int(len(peaks)),
        heart_rate_bpm=hr, sdnn_ms=sdnn, rmssd_ms=rmssd, pnn50=pnn50,
        class_counts=ref.counts() if ref is not None else None, n_detected=int(detected.size),
    )
    if ref is not None:
        tp, fp, fn = match_beats(ref.samples, detected, record.fs).counts
        se, ppv = sensitivity_ppv(tp, fp, fn)
        stats.detector_tp, stats.detector_fp, stats.detector_fn = tp, fp, fn
        stats.detector_se, stats.detector_ppv = se, ppv
    if record.artifact_mask is not None and record.n_samples:
        for name, bit in ARTIFACT_BITS.items():
            frac = float(np.mean((record.artifact_mask & bit) != 0))
            if frac > 0:
                stats.artifact_fraction[name] = round(frac, 4)
    stats.signal_quality = signal_quality(record.lead(lead), record.fs, detected).to_dict()
    stats.conditions = [
        {"label": c.label, "start_s": round(c.start / record.fs, 3), "end_s": round(c.end / record.fs, 3),
         "snr_db": c.level_db, "source": c.source}
        for c in record.conditions
    ]
    return stats
