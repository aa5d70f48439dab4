"""The one beat matcher: detected or predicted beats paired with reference beats by the ANSI/AAMI EC57 rule.

ANSI/AAMI EC57 (*Testing and reporting performance results of cardiac rhythm and ST segment measurement
algorithms*, 1998, revised 2012) compares a device's beats with the reference annotations beat by beat:
a detection *matches* a reference beat when the two lie within 150 ms of each other (inclusive), and
each beat takes part in at most one match. Where a detection is within the window of two reference
beats (or a reference beat of two detections), the closer pair is the match: that is how PhysioNet's
``bxb`` ("ANSI/AAMI-standard beat-by-beat annotation file comparator", WFDB ``app/bxb.c``, default
match window ``-w 0.15``) decides it, pairing an annotation with the other side's only when it is
nearer than that side's next one. Here: every pair within the window is a candidate, the closest
candidates are taken first (ties: the earlier reference beat, then the earlier detection), each beat
once. A reference beat left over is a false negative (*missed*), a detection left over a false
positive (*extra*).

Used by QRS detection figures (:mod:`qrs` detectors, :mod:`stats`, ``tools/bench_ecg.py``), the
beat-class evaluation (:mod:`evaluate`) and the emulator's run score (``firmware_sim.score``).

Written here rather than taken from ``wfdb.processing.Comparitor``: wfdb is an optional extra and
this matcher runs on the device side (numpy only); and the Comparitor resolves a contested detection
only between neighbouring reference beats, counts a pair only strictly inside its window, wants both
sides sorted, and divides by zero when one side is empty. With its window one sample wider (the same
pairs allowed), its pairs equal this matcher's on the MIT-BIH DS1 records and record 100, clean and
with NSTDB noise mixed in (our detector, 92 record x condition runs; ``tests/ecg/test_beat_match.py``
checks record 100).

numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MATCH_WINDOW_S = 0.15  # EC57's match window: a detection within 150 ms of a reference beat matches it


@dataclass(frozen=True)
class BeatPairs:
    """Indices into the reference and detection arrays as given: matched pairs (sorted by reference
    index), then what is left on each side."""

    ref: np.ndarray  # int64 (m,)
    pred: np.ndarray  # int64 (m,)
    missed: np.ndarray  # reference indices without a detection (false negatives)
    extra: np.ndarray  # detection indices without a reference beat (false positives)

    @property
    def tp(self) -> int:
        return int(self.ref.shape[0])

    @property
    def fp(self) -> int:
        return int(self.extra.shape[0])

    @property
    def fn(self) -> int:
        return int(self.missed.shape[0])

    @property
    def counts(self) -> tuple[int, int, int]:
        """(tp, fp, fn)."""
        return self.tp, self.fp, self.fn


def match_beats(
    ref_samples: np.ndarray, pred_samples: np.ndarray, fs: float, window_s: float = MATCH_WINDOW_S
) -> BeatPairs:
    """Pair ``pred_samples`` with ``ref_samples`` (sample indices, any order) one to one within
    ``window_s`` (inclusive), the closest pairs first."""
    ref = np.asarray(ref_samples, dtype=np.int64).reshape(-1)
    pred = np.asarray(pred_samples, dtype=np.int64).reshape(-1)
    w = int(round(window_s * fs))
    order = np.argsort(pred, kind="stable")
    sp = pred[order]
    pr = pp = np.zeros(0, dtype=np.int64)
    if ref.size and sp.size:
        # every (reference, detection) pair within the window, as flat index arrays
        lo = np.searchsorted(sp, ref - w, side="left")
        hi = np.searchsorted(sp, ref + w, side="right")
        counts = hi - lo
        total = int(counts.sum())
        if total:
            r_idx = np.repeat(np.arange(ref.size), counts)
            p_sorted = np.repeat(lo, counts) + np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
            dist = np.abs(ref[r_idx] - sp[p_sorted])
            rank = np.lexsort((p_sorted, r_idx, dist))
            used_r = np.zeros(ref.size, dtype=bool)
            used_p = np.zeros(sp.size, dtype=bool)
            pairs_r: list[int] = []
            pairs_p: list[int] = []
            # a Python loop over candidate pairs (about one per beat): each choice depends on the earlier ones
            for k in rank.tolist():
                i, j = int(r_idx[k]), int(p_sorted[k])
                if not used_r[i] and not used_p[j]:
                    used_r[i] = used_p[j] = True
                    pairs_r.append(i)
                    pairs_p.append(j)
            pr = np.asarray(pairs_r, dtype=np.int64)
            pp = order[np.asarray(pairs_p, dtype=np.int64)] if pairs_p else np.zeros(0, np.int64)
            keep = np.argsort(pr, kind="stable")
            pr, pp = pr[keep], pp[keep]
    missed = np.setdiff1d(np.arange(ref.size), pr).astype(np.int64)
    extra = np.setdiff1d(np.arange(pred.size), pp).astype(np.int64)
    return BeatPairs(pr, pp.astype(np.int64), missed, extra)


def sensitivity_ppv(tp: int, fp: int, fn: int) -> tuple[float, float]:
    """(Se, +P) as fractions; NaN where undefined (no reference beats / no detections)."""
    se = tp / (tp + fn) if tp + fn else float("nan")
    ppv = tp / (tp + fp) if tp + fp else float("nan")
    return se, ppv
