"""The emulated sensor: any ``EcgSource`` read in fixed chunks, as fast as possible or paced like hardware.

A real front end hands the firmware a block of samples every few hundred milliseconds; ``chunk_s`` is
that block. ``realtime`` paces the blocks on the wall clock (``ecg.sources.paced``).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.ecg.sources import EcgSource, paced


def sensor_chunks(source: EcgSource, chunk_s: float = 0.5, realtime: bool = False) -> Iterator[np.ndarray]:
    if not chunk_s > 0:
        raise KasminaError(f"sensor chunk must be longer than 0 s, got {chunk_s}")
    size = max(1, int(round(chunk_s * source.fs)))
    return paced(source.chunks(size), source.fs, realtime)
