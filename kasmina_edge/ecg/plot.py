"""ECG strip plots (matplotlib, optional extra), written atomically."""

from __future__ import annotations

from pathlib import Path

from kasmina_edge.ecg.types import Record


def plot_strip(record: Record, out: str | Path, start_s: float = 0.0, seconds: float = 10.0) -> Path:
    raise NotImplementedError
