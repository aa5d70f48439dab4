"""How well a run classified: beats found, and their classes, against a record's reference beats.

Detected beats are paired one to one with reference beats by the EC57 rule (``ecg.beat_match``, the
matcher the QRS figures and ``ecg.evaluate`` use); classes are compared on the pairs. Per-class
sensitivity (Se) and positive predictivity (+P) are over the matched beats (``ecg.evaluate`` also
counts the missed and extra ones), never accuracy alone; macro-F1 is over the classes present in the
reference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from kasmina_edge.contracts.events import BeatClassified
from kasmina_edge.ecg.beat_match import match_beats
from kasmina_edge.ecg.types import AAMI_CLASSES, Record


@dataclass
class BeatScore:
    reference_beats: int
    detected_beats: int
    matched: int
    confusion: np.ndarray  # [true class, predicted class] over matched beats
    classes: tuple[str, ...] = AAMI_CLASSES

    @property
    def sensitivity(self) -> float:
        return self.matched / self.reference_beats if self.reference_beats else float("nan")

    @property
    def ppv(self) -> float:
        return self.matched / self.detected_beats if self.detected_beats else float("nan")

    def se(self, cls: str) -> float:
        k = self.classes.index(cls)
        row = self.confusion[k].sum()
        return float(self.confusion[k, k] / row) if row else float("nan")

    def ppv_of(self, cls: str) -> float:
        k = self.classes.index(cls)
        col = self.confusion[:, k].sum()
        return float(self.confusion[k, k] / col) if col else float("nan")

    def support(self, cls: str) -> int:
        return int(self.confusion[self.classes.index(cls)].sum())

    def macro_f1(self, min_support: int = 1) -> float:
        f1s = []
        for c in self.classes:
            if self.support(c) < min_support:
                continue
            se, pp = self.se(c), self.ppv_of(c)
            f1s.append(0.0 if not (se + pp > 0) or np.isnan(pp) else 2 * se * pp / (se + pp))
        return float(np.mean(f1s)) if f1s else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference_beats": self.reference_beats,
            "detected_beats": self.detected_beats,
            "beat_sensitivity": self.sensitivity,
            "beat_ppv": self.ppv,
            "per_class": {c: {"support": self.support(c), "se": self.se(c), "ppv": self.ppv_of(c)} for c in self.classes},
            "macro_f1": self.macro_f1(),
            "confusion": self.confusion.tolist(),
        }


def score_run(
    predictions: Sequence[BeatClassified],
    record: Record,
    *,
    start_s: float = 0.0,
    end_s: float | None = None,
    offset_samples: int = 0,
) -> BeatScore:
    """Score a run's beats (``RunSummary.predictions``) against ``record.beats`` within [start_s, end_s).

    ``offset_samples``: where the streamed signal began inside ``record`` (``--from``)."""
    if record.beats is None:
        raise ValueError(f"record {record.name} has no reference beats")
    fs = record.fs
    lo = int(round(start_s * fs))
    hi = int(round(end_s * fs)) if end_s is not None else record.n_samples
    ref_s = record.beats.samples.astype(np.int64)
    ref_c = record.beats.classes.astype(np.int64)
    keep = (ref_s >= lo) & (ref_s < hi)
    ref_s, ref_c = ref_s[keep], ref_c[keep]
    det_s = np.array([b.sample + offset_samples for b in predictions], dtype=np.int64)
    det_c = np.array([AAMI_CLASSES.index(b.label) if b.label in AAMI_CLASSES else -1 for b in predictions], np.int64)
    dk = (det_s >= lo) & (det_s < hi)
    det_s, det_c = det_s[dk], det_c[dk]
    conf = np.zeros((len(AAMI_CLASSES), len(AAMI_CLASSES)), dtype=np.int64)
    pairs = match_beats(ref_s, det_s, fs)
    known = det_c[pairs.pred] >= 0
    np.add.at(conf, (ref_c[pairs.ref][known], det_c[pairs.pred][known]), 1)
    return BeatScore(int(ref_s.shape[0]), int(det_s.shape[0]), pairs.tp, conf)
