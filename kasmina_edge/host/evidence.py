"""Gate evidence that holds beyond one validation slice: out-of-fold predictions and a paired bootstrap.

A patient's adaptation window holds a few hundred beats; a validation slice of a fifth of them holds
a few dozen, where one flipped beat moves macro-F1 by points. Two remedies, used together:

* **Out-of-fold predictions** (:func:`out_of_fold`): the window is cut into blocks of time; the seed
  recipe is run once per block with that block held out, and predicts it. Every beat of the window
  is then judged by a seed that never trained on it, so the gates see all of the window's beats, not
  a fifth. Blocks of time, not shuffled beats: neighbouring beats of one patient look alike, and a
  shuffled split would let a seed see the beat's twin (the same reason the base splits by record).
* **A paired bootstrap** (:func:`paired_bootstrap`): beats are resampled with replacement, the base's
  and the seed's predictions of the same beats together, and the gain in macro-F1 and the change in
  N-beat accuracy are recomputed per resample. A gate passes on the lower quantile, not the mean:
  a seed is kept only when it is unlikely to hurt (Efron & Tibshirani 1993, ch. 13, percentile
  intervals; macro-F1 over the classes the window holds, as in de Chazal et al. 2004's gross figures).
  Where the beats come from several records, ``groups`` resamples whole records instead (the cluster
  bootstrap, Field & Welsh 2007): beats of one record are not independent, and a seed that helps one
  record a lot and hurts the others must not look safe because that record holds many beats.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

N_GATE_CLASSES = 4  # N, S, V, F: Q beats are too rare in MIT-BIH to judge a seed by


@dataclass(frozen=True)
class GateEvidence:
    """The base and the seed on the same beats, with bootstrap lower bounds of the differences."""

    n_beats: int
    classes: tuple[int, ...]  # the classes macro-F1 is taken over (enough beats in the window)
    base_macro_f1: float
    seed_macro_f1: float
    gain: float  # seed − base macro-F1 on all beats
    gain_low: float  # its lower ``quantile`` over the bootstrap resamples
    n_acc_delta: float  # seed − base N-beat accuracy (0 when the window has no N beats)
    n_acc_delta_low: float
    quantile: float
    rounds: int

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in d.items()}


def _confusions(truth: np.ndarray, pred: np.ndarray, index: np.ndarray, k: int) -> np.ndarray:
    """(rounds, k, k) confusion matrices of the resampled beats ``index`` (rounds, n)."""
    codes = truth[index] * k + pred[index]
    rounds = index.shape[0]
    offset = (np.arange(rounds) * k * k)[:, None]
    flat = np.bincount((codes + offset).ravel(), minlength=rounds * k * k)
    return flat.reshape(rounds, k, k)


def _group_confusions(truth: np.ndarray, base: np.ndarray, seed: np.ndarray, groups: np.ndarray, rounds: int,
                      rng: np.random.Generator, k: int) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(rounds, k, k) confusions of the base and the seed, each round's records drawn with replacement:
    a record's confusion counts as often as it was drawn."""
    _, gid = np.unique(groups, return_inverse=True)
    n_groups = int(gid.max()) + 1
    draws = rng.integers(0, n_groups, size=(rounds, n_groups))
    times = np.stack([np.bincount(row, minlength=n_groups) for row in draws])  # (rounds, groups)

    def per_group(pred: np.ndarray) -> np.ndarray:
        flat = np.bincount(gid * k * k + truth * k + pred, minlength=n_groups * k * k)
        return flat.reshape(n_groups, k, k)

    return (np.einsum("rg,gij->rij", times, per_group(base)), np.einsum("rg,gij->rij", times, per_group(seed)))


def _macro_f1(conf: np.ndarray, classes: tuple[int, ...]) -> np.ndarray:
    """Macro-F1 over ``classes`` of each confusion matrix in (rounds, k, k)."""
    idx = np.asarray(classes)
    tp = conf[:, idx, idx].astype(np.float64)
    support = conf[:, idx, :].sum(axis=2)
    predicted = conf[:, :, idx].sum(axis=1)
    denom = support + predicted
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(denom > 0, 2.0 * tp / np.maximum(denom, 1), 0.0)
    return np.asarray(f1.mean(axis=1))


def _n_accuracy(conf: np.ndarray) -> np.ndarray:
    n = conf[:, 0, :].sum(axis=1)
    return np.where(n > 0, conf[:, 0, 0] / np.maximum(n, 1), 1.0)


def gate_classes(truth: np.ndarray, min_support: int, n_classes: int = N_GATE_CLASSES) -> tuple[int, ...]:
    """The classes with at least ``min_support`` beats (N always): those macro-F1 can judge."""
    counts = np.bincount(np.asarray(truth, dtype=np.int64), minlength=n_classes)[:n_classes]
    return tuple(int(c) for c in range(n_classes) if c == 0 or counts[c] >= max(1, min_support))


def paired_bootstrap(
    truth: np.ndarray,
    base_pred: np.ndarray,
    seed_pred: np.ndarray,
    *,
    rounds: int = 400,
    quantile: float = 0.1,
    min_support: int = 3,
    seed: int = 0,
    n_classes: int = 5,
    groups: np.ndarray | None = None,
) -> GateEvidence:
    """The seed against the base on the same beats: gains and their lower bootstrap quantile.

    ``groups``: the record (any label) of each beat; when given, whole records are resampled.
    """
    t = np.asarray(truth, dtype=np.int64)
    b = np.asarray(base_pred, dtype=np.int64)
    s = np.asarray(seed_pred, dtype=np.int64)
    if not (t.shape == b.shape == s.shape) or t.ndim != 1 or t.size == 0:
        raise ValueError("truth and both predictions must be equal-length, non-empty 1-D arrays")
    if groups is not None and np.shape(groups) != t.shape:
        raise ValueError("groups must give one record per beat")
    # the AAMI five: Q is never judged (N_GATE_CLASSES); any other task judges all its classes
    classes = gate_classes(t, min_support, N_GATE_CLASSES if n_classes == 5 else n_classes)
    everything = np.arange(t.size)[None, :]
    rng = np.random.default_rng(seed)
    f1_b, f1_s = (_macro_f1(_confusions(t, p, everything, n_classes), classes)[0] for p in (b, s))
    acc_b, acc_s = (_n_accuracy(_confusions(t, p, everything, n_classes))[0] for p in (b, s))
    if groups is None:
        resampled = rng.integers(0, t.size, size=(rounds, t.size))
        conf_b, conf_s = _confusions(t, b, resampled, n_classes), _confusions(t, s, resampled, n_classes)
    else:
        conf_b, conf_s = _group_confusions(t, b, s, np.asarray(groups), rounds, rng, n_classes)
    gains = _macro_f1(conf_s, classes) - _macro_f1(conf_b, classes)
    n_deltas = _n_accuracy(conf_s) - _n_accuracy(conf_b)
    return GateEvidence(
        n_beats=int(t.size), classes=classes, base_macro_f1=float(f1_b), seed_macro_f1=float(f1_s),
        gain=float(f1_s - f1_b), gain_low=float(np.quantile(gains, quantile)),
        n_acc_delta=float(acc_s - acc_b), n_acc_delta_low=float(np.quantile(n_deltas, quantile)),
        quantile=quantile, rounds=rounds,
    )  # fmt: skip


def time_blocks(r_peaks: np.ndarray, fs: float, block_s: float) -> np.ndarray:
    """The block of time (0, 1, …) each beat falls in."""
    return (np.asarray(r_peaks, dtype=np.int64) // max(1, int(round(block_s * fs)))).astype(np.int64)


def out_of_fold(
    blocks: np.ndarray, fit_predict: Callable[[np.ndarray, np.ndarray], np.ndarray], folds: int
) -> np.ndarray:
    """Predictions of every beat by a model that never trained on its block.

    ``fit_predict(train_index, test_index)`` trains the recipe on the beats ``train_index`` and
    returns its predicted classes for ``test_index``. Blocks are dealt round-robin into ``folds``.
    """
    fold_of = np.asarray(blocks, dtype=np.int64) % max(2, folds)
    out = np.full(fold_of.shape[0], -1, dtype=np.int64)
    for f in np.unique(fold_of):
        test = np.flatnonzero(fold_of == f)
        train = np.flatnonzero(fold_of != f)
        if train.size == 0:
            continue
        out[test] = fit_predict(train, test)
    return out
