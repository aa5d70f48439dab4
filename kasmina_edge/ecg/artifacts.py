"""Artifacts added to a record at a chosen SNR, marking the artifact mask and a condition span.

SNR follows the MIT-BIH Noise Stress Test Database: SNR = 10 log10(S / N), with S the
power of a sine whose peak-to-peak amplitude is the clean record's QRS amplitude
(S = A_pp^2 / 8, A_pp the median peak-to-peak amplitude within +/-50 ms of each R peak)
and N the mean-removed power of the noise over the span, per lead.

Muscle noise (``emg``) and baseline wander use the real NSTDB ``ma`` and ``bw`` records when
they are present (see :func:`real_noise`), synthetic models otherwise; NSTDB's electrode
motion record is not provided, so ``electrode_motion`` is always synthetic. The condition
span records which one was used (``Interval.source``: ``nstdb:ma`` or ``synthetic``).

``lead_off`` (flat line) and ``saturation`` (clipping at the ADC rails) are not additive:
for them ``snr_db`` sets the residual noise on the flat line and the size of the
low-frequency excursion that drives the signal into the rails, respectively. Beat labels
inside a lead-off span are kept (the heart did beat) and the mask says they cannot be seen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from functools import lru_cache

import numpy as np
from scipy.signal import butter, sosfiltfilt

from kasmina_edge.contracts.errors import KasminaError, MissingExtraError
from kasmina_edge.ecg.data import data_root
from kasmina_edge.ecg.types import ARTIFACT_BITS, Interval, Record

ARTIFACT_KINDS: tuple[str, ...] = (
    "baseline_wander", "emg", "powerline", "electrode_motion", "lead_off", "saturation",
)
ALIASES: dict[str, str] = {
    "bw": "baseline_wander", "ma": "emg", "muscle": "emg", "em": "electrode_motion", "flatline": "lead_off",
    "mains": "powerline",
}
_NSTDB_KIND = {"emg": "ma", "baseline_wander": "bw"}
QRS_HALF_S = 0.05


def canonical_kind(kind: str) -> str:
    k = ALIASES.get(kind, kind)
    if k not in ARTIFACT_KINDS:
        raise KasminaError(
            f"unknown artifact {kind!r} (known: {', '.join(ARTIFACT_KINDS)}; aliases: {', '.join(sorted(ALIASES))})"
        )
    return k


@lru_cache(maxsize=8)
def _nstdb(kind: str, fs: float) -> np.ndarray | None:
    base = data_root() / "nstdb" / kind
    if not base.with_name(kind + ".hea").exists():
        return None
    from kasmina_edge.ecg.wfdb_io import read_wfdb

    try:
        rec = read_wfdb(base, fs=fs)
    except MissingExtraError:
        return None  # real noise needs the wfdb extra; synthetic noise does not
    sig = rec.signal.astype(np.float64)
    return sig - sig.mean(axis=0, keepdims=True)


def real_noise(kind: str, n_samples: int, fs: float, rng: np.random.Generator) -> np.ndarray | None:
    """A random excerpt (random channel and offset) of NSTDB ``ma`` or ``bw`` at ``fs``, mean removed.

    None when the NSTDB records (or the wfdb package) are absent. Longer requests than the
    record are stitched from several excerpts.
    """
    if kind not in ("ma", "bw"):
        raise KasminaError(f"real noise kind must be 'ma' or 'bw', got {kind!r}")
    noise = _nstdb(kind, float(fs))
    if noise is None:
        return None
    parts: list[np.ndarray] = []
    left = int(n_samples)
    while left > 0:
        take = min(left, noise.shape[0])
        ch = int(rng.integers(noise.shape[1]))
        off = int(rng.integers(0, noise.shape[0] - take + 1))
        parts.append(noise[off: off + take, ch])
        left -= take
    out = np.concatenate(parts) if parts else np.zeros(0)
    return out - out.mean() if out.size else out


# -- synthetic models (unit scale; add_noise scales them to the SNR) ----------------------

def _band(x: np.ndarray, fs: float, lo: float | None, hi: float | None) -> np.ndarray:
    nyq = 0.5 * fs
    if lo is not None and hi is not None and hi < 0.95 * nyq:
        sos = butter(4, [lo, hi], btype="bandpass", fs=fs, output="sos")
    elif lo is not None:
        sos = butter(4, lo, btype="highpass", fs=fs, output="sos")
    else:
        sos = butter(4, min(hi or 0.45 * fs, 0.45 * fs), btype="lowpass", fs=fs, output="sos")
    return sosfiltfilt(sos, x) if x.shape[0] > 30 else x


def synthetic_emg(n: int, fs: float, rng: np.random.Generator) -> np.ndarray:
    """Muscle noise: broadband (20-150 Hz) Gaussian noise in bursts (slow envelope)."""
    x = _band(rng.normal(size=n), fs, 20.0, min(150.0, 0.45 * fs))
    env = 0.4 + np.abs(_band(rng.normal(size=n), fs, None, 0.5))
    return x * env / max(float(env.mean()), 1e-9)


def synthetic_baseline(n: int, fs: float, rng: np.random.Generator) -> np.ndarray:
    """Baseline wander: respiration (0.15-0.4 Hz) plus slow drift below 0.5 Hz."""
    t = np.arange(n) / fs
    resp = np.sin(2 * np.pi * rng.uniform(0.15, 0.4) * t + rng.uniform(0, 2 * np.pi))
    drift = np.cumsum(rng.normal(size=n)) / np.sqrt(fs)
    drift = _band(drift - drift.mean(), fs, None, 0.5) if n > 30 else drift
    drift = drift / max(float(drift.std()), 1e-9)
    return resp + drift


def synthetic_electrode_motion(n: int, fs: float, rng: np.random.Generator) -> np.ndarray:
    """Electrode motion: abrupt shifts relaxing over 0.1-0.5 s, plus 0.5-10 Hz noise (in the ECG band)."""
    x = np.zeros(n)
    t = 0.0
    while True:
        t += rng.exponential(1.0)  # about one movement per second
        i = int(t * fs)
        if i >= n:
            break
        tau = rng.uniform(0.1, 0.5)
        m = min(n - i, int(5 * tau * fs) + 1)
        x[i: i + m] += rng.normal(0, 1.0) * np.exp(-np.arange(m) / (tau * fs))
    x += 0.5 * _band(rng.normal(size=n), fs, 0.5, 10.0) / 0.2
    return x


def synthetic_powerline(n: int, fs: float, rng: np.random.Generator, mains_hz: float = 50.0) -> np.ndarray:
    """Mains interference: the fundamental and a third harmonic, slowly modulated."""
    t = np.arange(n) / fs
    am = 1.0 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.05, 0.2) * t)
    x = np.sin(2 * np.pi * mains_hz * t + rng.uniform(0, 2 * np.pi))
    if 3 * mains_hz < 0.5 * fs:
        x += 0.2 * np.sin(2 * np.pi * 3 * mains_hz * t + rng.uniform(0, 2 * np.pi))
    return x * am


# -- SNR ---------------------------------------------------------------------------------

def qrs_signal_power(record: Record, lead: int) -> float:
    """NSTDB's S: (median QRS peak-to-peak amplitude)^2 / 8 for one lead."""
    x = record.signal[:, lead].astype(np.float64)
    half = max(1, int(round(QRS_HALF_S * record.fs)))
    r = record.beats.samples if record.beats is not None and len(record.beats) else None
    if r is None:
        from kasmina_edge.ecg.qrs import detect_qrs

        r = detect_qrs(x, record.fs) if x.shape[0] > record.fs * 3 else np.zeros(0, dtype=np.int64)
    r = np.asarray(r, dtype=np.int64)
    r = r[(r >= half) & (r < x.shape[0] - half)]
    if r.size:
        win = x[r[:, None] + np.arange(-half, half + 1)[None, :]]
        pp = float(np.median(win.max(axis=1) - win.min(axis=1)))
    else:
        pp = float(np.percentile(x, 99.5) - np.percentile(x, 0.5)) if x.size else 0.0
    if pp <= 0:
        raise KasminaError(f"record {record.name!r} lead {lead}: no QRS amplitude to set an SNR against")
    return pp * pp / 8.0


def scale_to_snr(noise: np.ndarray, signal_power: float, snr_db: float) -> np.ndarray:
    n = noise - noise.mean()
    p = float(np.mean(n * n))
    if p <= 0:
        return n
    return n * np.sqrt(signal_power / (p * 10.0 ** (snr_db / 10.0)))


def _noise_for(kind: str, n: int, fs: float, rng: np.random.Generator, real: bool, mains_hz: float
               ) -> tuple[np.ndarray, str]:
    if real and kind in _NSTDB_KIND:
        x = real_noise(_NSTDB_KIND[kind], n, fs, rng)
        if x is not None:
            return x, f"nstdb:{_NSTDB_KIND[kind]}"
    if kind == "emg":
        return synthetic_emg(n, fs, rng), "synthetic"
    if kind == "baseline_wander":
        return synthetic_baseline(n, fs, rng), "synthetic"
    if kind == "electrode_motion":
        return synthetic_electrode_motion(n, fs, rng), "synthetic"
    return synthetic_powerline(n, fs, rng, mains_hz), "synthetic"


def add_noise(
    record: Record,
    kind: str,
    snr_db: float,
    rng: np.random.Generator,
    start: int | None = None,
    end: int | None = None,
    real: bool = True,
    leads: Sequence[int] | None = None,
    mains_hz: float = 50.0,
) -> Record:
    """A copy of ``record`` with an artifact over samples [start, end) at ``snr_db``, mask bits and a condition span."""
    kind = canonical_kind(kind)
    if not np.isfinite(snr_db):
        raise KasminaError(f"snr_db must be finite, got {snr_db}")
    n_total = record.n_samples
    a = 0 if start is None else int(start)
    b = n_total if end is None else int(end)
    if not 0 <= a < b <= n_total:
        raise KasminaError(f"artifact span [{a}, {b}) outside the record (0..{n_total} samples)")
    lead_idx = list(range(record.signal.shape[1])) if leads is None else [int(x) for x in leads]
    for li in lead_idx:
        if not 0 <= li < record.signal.shape[1]:
            raise KasminaError(f"lead {li} out of range (record has {record.signal.shape[1]} leads)")
    signal = record.signal.astype(np.float64, copy=True)
    mask = (record.artifact_mask.copy() if record.artifact_mask is not None
            else np.zeros(n_total, dtype=np.uint8))
    n = b - a
    source = "synthetic"
    bit = np.uint8(ARTIFACT_BITS[kind])
    if kind == "lead_off":
        for li in lead_idx:
            s = qrs_signal_power(record, li)
            signal[a:b, li] = scale_to_snr(rng.normal(size=n), s, snr_db)
        mask[a:b] |= bit
    elif kind == "saturation":
        for li in lead_idx:
            s = qrs_signal_power(record, li)
            # The front end's range is set just above this span's own peaks, so the added
            # excursion drives the signal into the rails wherever it pushes outwards.
            rail = 1.05 * float(np.percentile(np.abs(signal[a:b, li]), 99.5))
            signal[a:b, li] += scale_to_snr(synthetic_baseline(n, record.fs, rng), s, snr_db)
            clipped = np.abs(signal[a:b, li]) >= rail
            signal[a:b, li] = np.clip(signal[a:b, li], -rail, rail)
            mask[a:b][clipped] |= bit
    else:
        for li in lead_idx:
            s = qrs_signal_power(record, li)
            noise, source = _noise_for(kind, n, record.fs, rng, real, mains_hz)
            signal[a:b, li] += scale_to_snr(noise, s, snr_db)
        mask[a:b] |= bit
    cond = Interval(a, b, kind, float(snr_db), source)
    return replace(record, signal=signal.astype(np.float32), artifact_mask=mask,
                   conditions=[*record.conditions, cond])
