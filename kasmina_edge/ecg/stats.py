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

from kasmina_edge.ecg.qrs import detect_qrs, match_beats, sensitivity_ppv
from kasmina_edge.ecg.types import AAMI_INDEX, ARTIFACT_BITS, Record

NN_MIN_S, NN_MAX_S = 0.3, 2.0


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
        tp, fp, fn = match_beats(ref.samples, detected, record.fs)
        se, ppv = sensitivity_ppv(tp, fp, fn)
        stats.detector_tp, stats.detector_fp, stats.detector_fn = tp, fp, fn
        stats.detector_se, stats.detector_ppv = se, ppv
    if record.artifact_mask is not None and record.n_samples:
        for name, bit in ARTIFACT_BITS.items():
            frac = float(np.mean((record.artifact_mask & bit) != 0))
            if frac > 0:
                stats.artifact_fraction[name] = round(frac, 4)
    stats.conditions = [
        {"label": c.label, "start_s": round(c.start / record.fs, 3), "end_s": round(c.end / record.fs, 3),
         "snr_db": c.level_db, "source": c.source}
        for c in record.conditions
    ]
    return stats
