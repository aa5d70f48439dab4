"""Beat-by-beat evaluation of beat-class predictions against reference annotations (AAMI EC57 style).

Predicted beats are paired one to one with reference beats by the EC57 rule of
:mod:`kasmina_edge.ecg.beat_match` (within 150 ms, closest pairs first, each beat used once). On the pairs, the classes form a confusion matrix; a
reference beat left without a prediction is *missed* (it counts against its class's sensitivity),
a prediction left without a reference beat is *extra* (it counts against the predicted class's
positive predictivity). Per AAMI class N/S/V/F: sensitivity (Se), positive predictivity (+P) and
F1; macro-F1 over those of the four classes the reference holds. Several records are pooled
*gross* (the confusion matrices summed, then the statistics), as EC57 reports them.

Predictions are read from the device's JSON-lines run log (``firmware_sim.runner``): every
``{"event": "beat", "sample": ..., "class": ...}`` record (``contracts.events.BeatClassified`` as JSON), ``sample`` counted from the start of the
stream. A stream started ``--from`` seconds into a record is aligned by that offset, or, when it is
not given, by the offset that pairs the most predictions with reference beats.

numpy only: the device side may run it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.contracts.events import BeatClassified
from kasmina_edge.ecg.beat_match import MATCH_WINDOW_S, match_beats
from kasmina_edge.ecg.types import AAMI_CLASSES, AAMI_INDEX, Beats

REPORTED_CLASSES: tuple[str, ...] = ("N", "S", "V", "F")
N_CLASSES = len(AAMI_CLASSES)
MISSED = N_CLASSES  # confusion column of reference beats nobody predicted
EXTRA = N_CLASSES  # confusion row of predictions with no reference beat
# an alignment must pair this share of the first predictions (by chance, ~37 % pair at 70 beats/min)
MIN_ALIGNED = 0.8


class EvaluationError(KasminaError):
    """Predictions or references that cannot be evaluated (unreadable log, no beats, bad class)."""


# ----------------------------------------------------------------------------------- alignment


def estimate_offset(
    ref_samples: np.ndarray,
    pred_samples: np.ndarray,
    fs: float,
    *,
    probe: int = 40,
    window_s: float = MATCH_WINDOW_S,
) -> tuple[int, float]:
    """(offset in samples, fraction of probed predictions it pairs): the shift that lines the first
    ``probe`` predictions up with reference beats best (a run streamed from ``--from`` seconds)."""
    ref = np.sort(np.asarray(ref_samples, dtype=np.int64).reshape(-1))
    pred = np.sort(np.asarray(pred_samples, dtype=np.int64).reshape(-1))
    if ref.size == 0 or pred.size == 0:
        return 0, 0.0
    head = pred[: min(probe, pred.size)]
    w = int(round(window_s * fs))

    def score(offset: int) -> tuple[int, float]:
        x = head + offset
        pos = np.clip(np.searchsorted(ref, x), 1, max(1, ref.size - 1))
        near = np.minimum(np.abs(ref[np.minimum(pos, ref.size - 1)] - x), np.abs(ref[pos - 1] - x))
        hit = near <= w
        return int(hit.sum()), float(np.mean(near[hit])) if hit.any() else float("inf")

    # every offset that puts the first prediction onto some reference beat (and 0); the most pairs
    # win, then the closest ones (an offset a few samples off pairs as many beats)
    candidates = np.unique(np.concatenate([[0], ref - head[0]]))
    scored = [(score(int(c)), int(c)) for c in candidates]
    (hits, _), best = max(scored, key=lambda e: (e[0][0], -e[0][1], -abs(e[1])))
    return best, float(hits / head.size)


# ----------------------------------------------------------------------------------- statistics


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den else float("nan")


@dataclass(frozen=True)
class Evaluation:
    """A beat-by-beat comparison: ``confusion[ref, pred]`` over AAMI_CLASSES, plus a MISSED column
    (reference beats without prediction) and an EXTRA row (predictions without reference beat)."""

    name: str
    confusion: np.ndarray  # int64 (6, 6); [EXTRA, MISSED] is always 0
    fs: float = 360.0
    span_s: tuple[float, float | None] = (0.0, None)
    offset_samples: int = 0
    records: tuple[str, ...] = ()

    @property
    def classes(self) -> tuple[str, ...]:
        return AAMI_CLASSES

    @property
    def reference_beats(self) -> int:
        return int(self.confusion[:N_CLASSES].sum())

    @property
    def predicted_beats(self) -> int:
        return int(self.confusion[:, :N_CLASSES].sum())

    @property
    def matched(self) -> int:
        return int(self.confusion[:N_CLASSES, :N_CLASSES].sum())

    @property
    def beat_se(self) -> float:
        """Detection sensitivity: reference beats that were paired with a prediction."""
        return _ratio(self.matched, self.reference_beats)

    @property
    def beat_ppv(self) -> float:
        """Detection positive predictivity: predictions that were paired with a reference beat."""
        return _ratio(self.matched, self.predicted_beats)

    def support(self, cls: str) -> int:
        return int(self.confusion[AAMI_INDEX[cls]].sum())

    def se(self, cls: str) -> float:
        """Reference beats of ``cls`` predicted as ``cls`` / all reference beats of ``cls`` (missed included)."""
        k = AAMI_INDEX[cls]
        return _ratio(self.confusion[k, k], self.confusion[k].sum())

    def ppv(self, cls: str) -> float:
        """Predictions of ``cls`` that are ``cls`` / all predictions of ``cls`` (extra ones included)."""
        k = AAMI_INDEX[cls]
        return _ratio(self.confusion[k, k], self.confusion[:, k].sum())

    def f1(self, cls: str) -> float:
        if self.support(cls) == 0:
            return float("nan")
        se, ppv = self.se(cls), self.ppv(cls)
        se, ppv = (0.0 if math.isnan(v) else v for v in (se, ppv))
        return 2 * se * ppv / (se + ppv) if se + ppv > 0 else 0.0

    def macro_f1(self, classes: Sequence[str] = REPORTED_CLASSES) -> float:
        """Mean F1 over the classes of ``classes`` that the reference holds."""
        vals = [self.f1(c) for c in classes if self.support(c) > 0]
        return float(np.mean(vals)) if vals else float("nan")

    def accuracy(self, cls: str | None = None) -> float:
        """Matched beats classed right (``cls``: among reference beats of that class, i.e. its Se on pairs)."""
        m = self.confusion[:N_CLASSES, :N_CLASSES]
        if cls is None:
            return _ratio(np.trace(m), m.sum())
        k = AAMI_INDEX[cls]
        return _ratio(m[k, k], m[k].sum())

    def __add__(self, other: Evaluation) -> Evaluation:
        return gross([self, other])

    def to_dict(self) -> dict[str, Any]:
        def num(v: float) -> float | None:
            return None if math.isnan(v) else round(float(v), 5)

        return {
            "name": self.name,
            "records": list(self.records) or [self.name],
            "span_s": list(self.span_s),
            "offset_samples": self.offset_samples,
            "reference_beats": self.reference_beats,
            "predicted_beats": self.predicted_beats,
            "matched": self.matched,
            "beat_se": num(self.beat_se),
            "beat_ppv": num(self.beat_ppv),
            "classes": {
                c: {
                    "support": self.support(c),
                    "se": num(self.se(c)),
                    "ppv": num(self.ppv(c)),
                    "f1": num(self.f1(c)),
                }
                for c in REPORTED_CLASSES
            },
            "macro_f1": num(self.macro_f1()),
            "accuracy": num(self.accuracy()),
            "confusion": {
                "rows": [*AAMI_CLASSES, "extra"],
                "columns": [*AAMI_CLASSES, "missed"],
                "counts": self.confusion.tolist(),
            },
        }


def gross(evaluations: Iterable[Evaluation], name: str = "gross") -> Evaluation:
    """Several evaluations pooled: confusion matrices summed (EC57's gross statistics)."""
    evs = list(evaluations)
    if not evs:
        raise EvaluationError("nothing to pool: no evaluations")
    conf = np.sum([e.confusion for e in evs], axis=0).astype(np.int64)
    records = tuple(r for e in evs for r in (e.records or (e.name,)))
    return Evaluation(name, conf, evs[0].fs, records=records)


def _class_indices(classes: Sequence[Any], what: str) -> np.ndarray:
    out = np.empty(len(classes), dtype=np.int64)
    for i, c in enumerate(classes):
        if isinstance(c, str):
            if c not in AAMI_INDEX:
                raise EvaluationError(
                    f"{what}: class {c!r} at beat {i} is not an AAMI class ({', '.join(AAMI_CLASSES)})"
                )
            out[i] = AAMI_INDEX[c]
        else:
            k = int(c)
            if not 0 <= k < N_CLASSES:
                raise EvaluationError(f"{what}: class index {k} at beat {i} is outside 0..{N_CLASSES - 1}")
            out[i] = k
    return out


def evaluate_beats(
    ref_samples: np.ndarray,
    ref_classes: Sequence[Any] | np.ndarray,
    pred_samples: np.ndarray,
    pred_classes: Sequence[Any] | np.ndarray,
    fs: float,
    *,
    name: str = "record",
    start_s: float = 0.0,
    end_s: float | None = None,
    offset_samples: int = 0,
    window_s: float = MATCH_WINDOW_S,
) -> Evaluation:
    """Compare predictions (samples counted ``offset_samples`` after the reference's origin) with the
    reference beats inside ``[start_s, end_s)``; classes as AAMI letters or indices."""
    rs = np.asarray(ref_samples, dtype=np.int64).reshape(-1)
    rc = _class_indices(list(np.asarray(ref_classes).reshape(-1)), f"{name} reference")
    ps = np.asarray(pred_samples, dtype=np.int64).reshape(-1) + int(offset_samples)
    pc = _class_indices(list(np.asarray(pred_classes, dtype=object).reshape(-1)), f"{name} predictions")
    if rs.shape != rc.shape or ps.shape != pc.shape:
        raise EvaluationError(f"{name}: samples and classes differ in length")
    lo = int(round(start_s * fs))
    hi = int(round(end_s * fs)) if end_s is not None else None
    rk = (rs >= lo) & (rs < hi if hi is not None else True)
    pk = (ps >= lo) & (ps < hi if hi is not None else True)
    rs, rc, ps, pc = rs[rk], rc[rk], ps[pk], pc[pk]
    pairs = match_beats(rs, ps, fs, window_s)
    conf = np.zeros((N_CLASSES + 1, N_CLASSES + 1), dtype=np.int64)
    np.add.at(conf, (rc[pairs.ref], pc[pairs.pred]), 1)
    np.add.at(conf, (rc[pairs.missed], MISSED), 1)
    np.add.at(conf, (EXTRA, pc[pairs.extra]), 1)
    return Evaluation(name, conf, fs, (start_s, end_s), int(offset_samples), (name,))


def evaluate_record(
    reference: Beats,
    pred_samples: np.ndarray,
    pred_classes: Sequence[Any] | np.ndarray,
    fs: float,
    *,
    name: str = "record",
    start_s: float = 0.0,
    end_s: float | None = None,
    offset_samples: int | None = None,
) -> Evaluation:
    """:func:`evaluate_beats` against a record's reference :class:`Beats`; ``offset_samples=None``
    aligns the predictions by :func:`estimate_offset` (a stream started part-way into the record)."""
    if reference is None or len(reference) == 0:
        raise EvaluationError(f"{name}: the record has no reference beat annotations to compare with")
    if offset_samples is None:
        offset_samples, frac = estimate_offset(reference.samples, np.asarray(pred_samples), fs)
        if len(pred_samples) and frac < MIN_ALIGNED:
            raise EvaluationError(
                f"{name}: the predictions do not line up with the reference beats at any offset "
                f"(best pairs {100 * frac:.0f} % of the first beats); give --from SECONDS"
            )
    return evaluate_beats(
        reference.samples,
        reference.classes,
        pred_samples,
        pred_classes,
        fs,
        name=name,
        start_s=start_s,
        end_s=end_s,
        offset_samples=offset_samples,
    )


# ----------------------------------------------------------------------------------- run logs


@dataclass(frozen=True)
class Predictions:
    """The beat predictions of one run log."""

    samples: np.ndarray  # int64, from the start of the stream
    classes: list[str]
    source: str | None = None  # the run's source spec, when the log says


def read_predictions(path: str | Path) -> Predictions:
    """``beat`` records of a JSON-lines run log (other events are skipped)."""
    p = Path(path)
    if not p.is_file():
        raise EvaluationError(f"predictions file not found: {p}")
    samples: list[int] = []
    classes: list[str] = []
    source: str | None = None
    with p.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise EvaluationError(f"{p}:{n}: not JSON ({exc.msg})") from None
            if not isinstance(rec, dict):
                raise EvaluationError(f"{p}:{n}: expected a JSON object per line")
            event = rec.get("event")
            if event == "run" and source is None and isinstance(rec.get("source"), str):
                source = rec["source"]
            if event != BeatClassified.KIND:
                continue
            try:
                samples.append(int(rec["sample"]))
                cls = str(rec["class"])
            except (KeyError, TypeError, ValueError):
                raise EvaluationError(
                    f"{p}:{n}: a beat record needs an integer 'sample' and a 'class'"
                ) from None
            if cls not in AAMI_INDEX:
                raise EvaluationError(
                    f"{p}:{n}: class {cls!r} is not an AAMI class ({', '.join(AAMI_CLASSES)})"
                )
            classes.append(cls)
    if not samples:
        raise EvaluationError(f"{p}: no beat predictions (no {{'event': 'beat'}} records)")
    return Predictions(np.asarray(samples, dtype=np.int64), classes, source)


# ----------------------------------------------------------------------------------- coverage

COVERAGE_WARN = 0.9  # predictions that stop before 90 % of the scored span: a truncated or interrupted run


@dataclass(frozen=True)
class Coverage:
    """How much of the scored span of the record the predictions reach (a run cut short scores its
    missing beats as missed, which reads as a bad classifier rather than a short file)."""

    fraction: float  # of the reference beats in the scored span, those before the last prediction (+ window)
    scored_s: tuple[float, float]  # the span scored, seconds into the record
    predicted_until_s: float  # the last prediction, seconds into the record

    @property
    def truncated(self) -> bool:
        return self.fraction < COVERAGE_WARN


def coverage(
    reference: Beats,
    pred_samples: np.ndarray,
    fs: float,
    *,
    offset_samples: int = 0,
    start_s: float = 0.0,
    end_s: float | None = None,
    window_s: float = MATCH_WINDOW_S,
) -> Coverage:
    """The share of the reference beats in [start_s, end_s) that lie before the last prediction."""
    ref = np.asarray(reference.samples, dtype=np.int64)
    lo = int(round(start_s * fs))
    hi = int(round(end_s * fs)) if end_s is not None else (int(ref.max()) + 1 if len(ref) else lo)
    scored = ref[(ref >= lo) & (ref < hi)]
    preds = np.asarray(pred_samples, dtype=np.int64) + int(offset_samples)
    last = int(preds.max()) if len(preds) else lo
    reach = last + int(round(window_s * fs))
    fraction = float((scored <= reach).mean()) if len(scored) else 1.0
    return Coverage(fraction, (lo / fs, hi / fs), last / fs)
