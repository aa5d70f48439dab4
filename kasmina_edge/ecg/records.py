"""Small operations on :class:`Record`: cropping a span with every label kept consistent."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.ecg.types import Beats, Interval, Record


def _crop_intervals(intervals: list[Interval], a: int, b: int) -> list[Interval]:
    out = []
    for iv in intervals:
        lo, hi = max(iv.start, a), min(iv.end, b)
        if hi > lo:
            out.append(replace(iv, start=lo - a, end=hi - a))
    return out


def crop(record: Record, start_s: float = 0.0, seconds: float | None = None) -> Record:
    """Samples [start_s, start_s + seconds) of a record, labels shifted to the new origin."""
    if start_s < 0 or (seconds is not None and seconds <= 0):
        raise KasminaError(f"bad span: from {start_s} s for {seconds} s")
    a = int(round(start_s * record.fs))
    if a >= record.n_samples:
        raise KasminaError(f"{record.name}: start {start_s} s is past the end ({record.seconds:.1f} s)")
    b = record.n_samples if seconds is None else min(record.n_samples, a + int(round(seconds * record.fs)))
    if a == 0 and b == record.n_samples:
        return record
    beats = None
    if record.beats is not None:
        keep = (record.beats.samples >= a) & (record.beats.samples < b)
        symbols = None if record.beats.symbols is None else [
            s for s, k in zip(record.beats.symbols, keep, strict=True) if k]
        beats = Beats(samples=record.beats.samples[keep] - a, classes=record.beats.classes[keep], symbols=symbols)
    return replace(
        record,
        signal=np.ascontiguousarray(record.signal[a:b]),
        beats=beats,
        artifact_mask=None if record.artifact_mask is None else record.artifact_mask[a:b].copy(),
        rhythms=_crop_intervals(record.rhythms, a, b),
        conditions=_crop_intervals(record.conditions, a, b),
        anomalies=_crop_intervals(record.anomalies, a, b),
    )
