"""The data every ECG producer and consumer shares: records, beat labels, AAMI classes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# AAMI EC57 beat classes, defined once in contracts (the order of the wire counts); a beat's class is its index
from kasmina_edge.contracts.telemetry import AAMI_CLASSES

AAMI_INDEX: dict[str, int] = {c: i for i, c in enumerate(AAMI_CLASSES)}

DEFAULT_FS = 360.0  # Hz: MIT-BIH's rate, and the model's.

# Bits of the per-sample artifact mask.
ARTIFACT_BITS: dict[str, int] = {
    "baseline_wander": 1 << 0,
    "emg": 1 << 1,
    "powerline": 1 << 2,
    "electrode_motion": 1 << 3,
    "lead_off": 1 << 4,
    "saturation": 1 << 5,
}


@dataclass
class Beats:
    """Beat labels: R-peak sample index and AAMI class index, sorted by sample."""

    samples: np.ndarray  # int64, shape (n,)
    classes: np.ndarray  # int8 index into AAMI_CLASSES, shape (n,)
    symbols: list[str] | None = None  # source symbols (e.g. MIT-BIH 'N', 'A', 'V'), when known

    def __len__(self) -> int:
        return int(self.samples.shape[0])

    def counts(self) -> dict[str, int]:
        return {c: int(np.sum(self.classes == i)) for i, c in enumerate(AAMI_CLASSES)}


@dataclass
class Interval:
    """A labelled span of samples [start, end): a rhythm (e.g. 'AFIB') or a signal condition (e.g. 'emg')."""

    start: int
    end: int
    label: str
    level_db: float | None = None  # SNR in dB for artifacts, where it applies
    source: str = ""  # where an artifact came from (e.g. 'nstdb:ma' real noise, 'synthetic'), when known


@dataclass
class Record:
    """An ECG recording with whatever labels are known."""

    name: str
    fs: float
    signal: np.ndarray  # float32 millivolts, shape (n_samples, n_leads)
    lead_names: list[str]
    beats: Beats | None = None
    artifact_mask: np.ndarray | None = None  # uint8 bit flags per sample (ARTIFACT_BITS)
    rhythms: list[Interval] = field(default_factory=list)
    conditions: list[Interval] = field(default_factory=list)
    anomalies: list[Interval] = field(default_factory=list)  # synthetic ground truth: where each anomaly was put

    @property
    def n_samples(self) -> int:
        return int(self.signal.shape[0])

    @property
    def seconds(self) -> float:
        return self.n_samples / self.fs

    def lead(self, index: int = 0) -> np.ndarray:
        return np.ascontiguousarray(self.signal[:, index], dtype=np.float32)
