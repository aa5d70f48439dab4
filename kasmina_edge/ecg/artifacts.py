"""Artifacts added to a rendered record at a chosen SNR, marking the artifact mask."""

from __future__ import annotations

import numpy as np

from kasmina_edge.ecg.types import Record

ARTIFACT_KINDS: tuple[str, ...] = (
    "baseline_wander", "emg", "powerline", "electrode_motion", "lead_off", "saturation",
)


def real_noise(kind: str, n_samples: int, fs: float, rng: np.random.Generator) -> np.ndarray | None:
    raise NotImplementedError


def add_noise(
    record: Record,
    kind: str,
    snr_db: float,
    rng: np.random.Generator,
    start: int | None = None,
    end: int | None = None,
    real: bool = True,
) -> Record:
    raise NotImplementedError
