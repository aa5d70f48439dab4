"""Real noise mixed into a record on the NSTDB schedule at a set SNR, from a noise folder the user names.

Only composition of ``ecg``'s own pieces (``noisy_stretches``, ``qrs_signal_power``, ``scale_to_snr``: the NSTDB
schedule and the SNR rule of ``ecg.noise.nstdb_mix``), so the noise can come from any NSTDB-style folder, not
only ``../shared/data/nstdb``. ``host.conditions.mix_noise`` does the same but lives in a torch module.
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.ecg.artifacts import qrs_signal_power, scale_to_snr
from kasmina_edge.ecg.noise import noisy_stretches
from kasmina_edge.ecg.types import ARTIFACT_BITS, Interval, Record

KIND_OF = {"ma": "emg", "bw": "baseline_wander", "em": "electrode_motion"}


def noise_folder(configured: str) -> Path:
    if configured:
        return Path(configured).expanduser()
    from kasmina_edge.ecg.data import data_root

    return data_root() / "nstdb"


@lru_cache(maxsize=4)
def read_noise(folder: str, name: str, fs: float) -> np.ndarray:
    """(samples, channels) of noise record ``name``, mean removed."""
    from kasmina_edge.ecg.wfdb_io import read_wfdb

    base = Path(folder) / name
    if not base.with_name(name + ".hea").exists():
        raise KasminaError(f"noise record {base}.hea not found (robustness.noise_folder must hold {name})")
    sig = read_wfdb(base, fs=fs).signal.astype(np.float64)
    return sig - sig.mean(axis=0, keepdims=True)


def mix(record: Record, noise: np.ndarray, name: str, snr_db: float, seed: int, *,
        first_clean_s: float, stretch_s: float, lead: int = 0) -> Record:
    """``record`` with one contiguous excerpt of ``noise`` added to ``lead`` over the noisy stretches."""
    spans = noisy_stretches(record.n_samples, record.fs, first_clean_s, stretch_s)
    if not spans:
        raise KasminaError(f"record {record.name} ({record.seconds:.0f} s) is too short for a noisy stretch after "
                           f"{first_clean_s:g} s (robustness.first_clean_s)")
    on = np.zeros(record.n_samples, dtype=bool)
    for a, b in spans:
        on[a:b] = True
    rng = np.random.default_rng(seed)
    n = int(on.sum())
    parts, left = [], n
    while left > 0:  # stitched from several excerpts when the record's noise is longer than the noise record
        take = min(left, noise.shape[0])
        ch = int(rng.integers(noise.shape[1]))
        off = int(rng.integers(0, noise.shape[0] - take + 1))
        parts.append(noise[off : off + take, ch])
        left -= take
    signal = record.signal.astype(np.float64, copy=True)
    signal[on, lead] += scale_to_snr(np.concatenate(parts), qrs_signal_power(record, lead), snr_db)
    kind = KIND_OF.get(name, "emg")
    mask = record.artifact_mask.copy() if record.artifact_mask is not None else np.zeros(record.n_samples, np.uint8)
    mask[on] |= np.uint8(ARTIFACT_BITS.get(kind, 0))
    conds = [Interval(a, b, kind, float(snr_db), f"noise:{name}") for a, b in spans]
    return replace(record, signal=signal.astype(np.float32), artifact_mask=mask, conditions=[*record.conditions, *conds])
