"""Beat datasets for training: windows, RR features and AAMI labels from records."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from kasmina_edge.ecg.types import Record
from kasmina_edge.ecg.windowing import WindowSpec


@dataclass
class BeatDataset:
    windows: np.ndarray  # float32 (n, 1, L)
    rr: np.ndarray  # float32 (n, 4)
    labels: np.ndarray  # int64 (n,) AAMI index
    records: np.ndarray  # str (n,) record name per beat
    r_peaks: np.ndarray  # int64 (n,)

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def beats_from_record(
    record: Record, spec: WindowSpec | None = None, lead: int = 0, use_annotations: bool = True
) -> BeatDataset:
    raise NotImplementedError


def concat(datasets: Sequence[BeatDataset]) -> BeatDataset:
    raise NotImplementedError


def synthetic_patients(
    n_patients: int, minutes: float, seed: int = 0, conditions: Sequence[str] = ("clean",)
) -> list[Record]:
    raise NotImplementedError
