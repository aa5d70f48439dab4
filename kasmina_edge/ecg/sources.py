"""ECG sources: fixed-size sample chunks from synthetic scenarios, WFDB or CSV."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol, runtime_checkable

import numpy as np

from kasmina_edge.ecg.types import DEFAULT_FS, Record


@runtime_checkable
class EcgSource(Protocol):
    fs: float
    n_leads: int
    name: str

    def chunks(self, size: int) -> Iterator[np.ndarray]: ...

    def record(self) -> Record | None: ...


def open_source(spec: str, fs: float = DEFAULT_FS, start_s: float = 0.0, seconds: float | None = None) -> EcgSource:
    raise NotImplementedError


def paced(chunks: Iterable[np.ndarray], fs: float, realtime: bool) -> Iterator[np.ndarray]:
    raise NotImplementedError
