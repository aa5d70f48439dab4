"""Real noise mixed into a record on the NSTDB schedule at a set SNR, from a noise folder the user names
(any NSTDB-style folder, not only ``../shared/data/nstdb``): ``ecg.noise``'s reader and mixer, with
validate's defaults and the plan's field names in its errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.ecg.noise import mix_noise, noisy_stretches, read_noise_record
from kasmina_edge.ecg.types import Record

KIND_OF = {"ma": "emg", "bw": "baseline_wander", "em": "electrode_motion"}


def noise_folder(configured: str) -> Path:
    if configured:
        return Path(configured).expanduser()
    from kasmina_edge.ecg.data import data_root

    return data_root() / "nstdb"


def read_noise(folder: str, name: str, fs: float) -> np.ndarray:
    """(samples, channels) of noise record ``name``, mean removed."""
    if not (Path(folder) / f"{name}.hea").exists():
        raise KasminaError(f"noise record {Path(folder) / name}.hea not found (robustness.noise_folder must hold {name})")
    return read_noise_record(folder, name, fs)


def mix(record: Record, noise: np.ndarray, name: str, snr_db: float, seed: int, *,
        first_clean_s: float, stretch_s: float, lead: int = 0) -> Record:
    """``record`` with one contiguous excerpt of ``noise`` added to ``lead`` over the noisy stretches."""
    if not noisy_stretches(record.n_samples, record.fs, first_clean_s, stretch_s):
        raise KasminaError(f"record {record.name} ({record.seconds:.0f} s) is too short for a noisy stretch after "
                           f"{first_clean_s:g} s (robustness.first_clean_s)")
    return mix_noise(record, noise, KIND_OF.get(name, "emg"), snr_db, np.random.default_rng(seed), lead=lead,
                     first_clean_s=first_clean_s, stretch_s=stretch_s, source=f"noise:{name}")  # fmt: skip
