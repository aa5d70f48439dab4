"""Noise stress records the way the MIT-BIH Noise Stress Test Database made its own.

NSTDB's noisy records (118e*, 119e*) are a clean MIT-BIH record plus a real noise record,
scaled to a set SNR, added "beginning after the first 5 minutes of each record, during
two-minute segments alternating with two-minute clean segments" (PhysioNet, NSTDB
description, https://physionet.org/content/nstdb/1.0.0/ ; the generator is WFDB's
``nstdbgen``, https://physionet.org/physiotools/wag/nstdbg-1.htm). One gain per lead is set
for the whole record, so the SNR holds over the noisy stretches taken together.

The SNR itself (S from the clean record's QRS amplitude, N the noise power) is
:mod:`kasmina_edge.ecg.artifacts`' definition; this module only adds the schedule.
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.ecg.artifacts import canonical_kind, qrs_signal_power, real_noise, scale_to_snr
from kasmina_edge.ecg.types import ARTIFACT_BITS, Interval, Record

FIRST_CLEAN_S = 300.0  # NSTDB: the first 5 minutes stay clean (a detector's learning period)
STRETCH_S = 120.0  # then 2 min noisy, 2 min clean, ...
_NSTDB_NAME = {"emg": "ma", "baseline_wander": "bw"}


def noisy_stretches(n_samples: int, fs: float, first_clean_s: float = FIRST_CLEAN_S,
                    stretch_s: float = STRETCH_S) -> list[tuple[int, int]]:
    """[start, end) sample spans that get noise: after ``first_clean_s``, every other ``stretch_s``."""
    if stretch_s <= 0 or first_clean_s < 0:
        raise KasminaError(f"stretch_s must be > 0 and first_clean_s >= 0 (got {stretch_s}, {first_clean_s})")
    out: list[tuple[int, int]] = []
    step = int(round(stretch_s * fs))
    a = int(round(first_clean_s * fs))
    while a < n_samples:
        out.append((a, min(a + step, n_samples)))
        a += 2 * step
    return out


def nstdb_mix(record: Record, kind: str, snr_db: float, rng: np.random.Generator,
              first_clean_s: float = FIRST_CLEAN_S, stretch_s: float = STRETCH_S) -> Record:
    """A copy of ``record`` with real NSTDB ``bw`` or ``ma`` noise at ``snr_db`` in alternating stretches.

    Each lead gets one contiguous excerpt of the noise record (time-aligned, as nstdbgen adds
    it), scaled once so that its power over the noisy stretches meets the SNR. The stretches
    are marked in ``artifact_mask`` and listed in ``conditions``.
    """
    kind = canonical_kind(kind)
    if kind not in _NSTDB_NAME:
        raise KasminaError(f"NSTDB-style mixing needs real noise: 'bw' or 'ma' (got {kind!r})")
    if not np.isfinite(snr_db):
        raise KasminaError(f"snr_db must be finite, got {snr_db}")
    spans = noisy_stretches(record.n_samples, record.fs, first_clean_s, stretch_s)
    if not spans:
        raise KasminaError(f"record {record.name!r} ({record.seconds:.0f} s) is too short for a noisy stretch "
                           f"after the first {first_clean_s:g} s")
    on = np.zeros(record.n_samples, dtype=bool)
    for a, b in spans:
        on[a:b] = True
    signal = record.signal.astype(np.float64, copy=True)
    name = _NSTDB_NAME[kind]
    for lead in range(signal.shape[1]):
        noise = real_noise(name, record.n_samples, record.fs, rng)
        if noise is None:
            raise KasminaError(f"NSTDB noise record {name!r} not found (needs ../shared/data/nstdb and wfdb)")
        gained = scale_to_snr(noise[on], qrs_signal_power(record, lead), snr_db)
        signal[on, lead] += gained
    mask = record.artifact_mask.copy() if record.artifact_mask is not None else np.zeros(record.n_samples, np.uint8)
    mask[on] |= np.uint8(ARTIFACT_BITS[kind])
    conds = [Interval(a, b, kind, float(snr_db), f"nstdb:{name}") for a, b in spans]
    return replace(record, signal=signal.astype(np.float32), artifact_mask=mask,
                   conditions=[*record.conditions, *conds])


# --------------------------------------------------------------------------- real noise records


@lru_cache(maxsize=4)
def read_noise_record(folder: str, name: str, fs: float) -> np.ndarray:
    """(samples, channels) of an NSTDB-style noise record ``folder/name`` at ``fs``, its mean removed."""
    from kasmina_edge.ecg.wfdb_io import read_wfdb

    base = Path(folder) / name
    if not base.with_name(name + ".hea").exists():
        raise KasminaError(f"noise record {base}.hea not found (the noise folder must hold {name})")
    sig = read_wfdb(base, fs=fs).signal.astype(np.float64)
    return sig - sig.mean(axis=0, keepdims=True)


def noise_excerpt(noise: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` contiguous samples of one random channel at a random offset (stitched when longer)."""
    parts: list[np.ndarray] = []
    left = n
    while left > 0:
        take = min(left, noise.shape[0])
        ch = int(rng.integers(noise.shape[1]))
        off = int(rng.integers(0, noise.shape[0] - take + 1))
        parts.append(noise[off : off + take, ch])
        left -= take
    return np.concatenate(parts) if parts else np.zeros(0)


def mix_noise(
    record: Record, noise: np.ndarray, kind: str, snr_db: float, rng: np.random.Generator, *, lead: int = 0,
    first_clean_s: float = FIRST_CLEAN_S, stretch_s: float = STRETCH_S, source: str = "nstdb",
) -> Record:
    """``record`` with ``noise`` (samples, channels) added to ``lead`` on the NSTDB schedule at ``snr_db``.

    As :func:`kasmina_edge.ecg.noise.nstdb_mix`: one gain for the record, set on the noise power over
    the noisy stretches; the stretches marked in ``artifact_mask`` and listed in ``conditions``.
    """
    spans = noisy_stretches(record.n_samples, record.fs, first_clean_s, stretch_s)
    if not spans:
        raise KasminaError(f"record {record.name!r} ({record.seconds:.0f} s) is too short for a noisy stretch "
                           f"after the first {first_clean_s:g} s")  # fmt: skip
    on = np.zeros(record.n_samples, dtype=bool)
    for a, b in spans:
        on[a:b] = True
    signal = record.signal.astype(np.float64, copy=True)
    excerpt = noise_excerpt(noise, int(on.sum()), rng)
    signal[on, lead] += scale_to_snr(excerpt, qrs_signal_power(record, lead), snr_db)
    mask = record.artifact_mask.copy() if record.artifact_mask is not None else np.zeros(record.n_samples, np.uint8)
    mask[on] |= np.uint8(ARTIFACT_BITS[kind])
    conds = [Interval(a, b, kind, float(snr_db), source) for a, b in spans]
    return replace(record, signal=signal.astype(np.float32), artifact_mask=mask,
                   conditions=[*record.conditions, *conds])  # fmt: skip
