"""Gate evidence: the paired bootstrap and out-of-fold predictions."""

from __future__ import annotations

import numpy as np
import pytest

from kasmina_edge.host.evidence import gate_classes, out_of_fold, paired_bootstrap, time_blocks


def _labels(n_normal: int, n_v: int) -> np.ndarray:
    return np.array([0] * n_normal + [2] * n_v)


def test_a_seed_that_fixes_v_beats_has_a_positive_lower_bound() -> None:
    truth = _labels(300, 40)
    base = np.zeros_like(truth)  # the base calls every beat normal
    seed = truth.copy()
    ev = paired_bootstrap(truth, base, seed, rounds=300)
    assert ev.gain > 0.4
    assert ev.gain_low > 0.3
    assert ev.n_acc_delta == 0.0 and ev.n_acc_delta_low == 0.0
    assert ev.classes == (0, 2)


def test_a_seed_that_flags_normal_beats_has_a_negative_n_bound() -> None:
    truth = _labels(300, 40)
    base = truth.copy()
    seed = truth.copy()
    seed[:30] = 2  # 10 % of the normal beats now called V
    ev = paired_bootstrap(truth, base, seed, rounds=300)
    assert ev.gain < 0
    assert ev.n_acc_delta == pytest.approx(-0.1)
    assert ev.n_acc_delta_low < -0.06


def test_a_lucky_flip_on_few_beats_is_not_evidence() -> None:
    rng = np.random.default_rng(3)
    truth = _labels(60, 4)
    base = truth.copy()
    base[60:62] = 0  # the base misses two of the four V beats
    seed = truth.copy()
    seed[60:61] = 0  # the seed misses one, and calls two normal beats V
    seed[rng.choice(60, 2, replace=False)] = 2
    ev = paired_bootstrap(truth, base, seed, rounds=400, quantile=0.1)
    assert ev.gain_low < 0 < ev.gain + 0.2  # the point estimate may look fine; the bound does not


def test_rare_classes_are_left_out_of_the_gate_metric() -> None:
    truth = np.array([0] * 50 + [1] * 2 + [2] * 5)
    assert gate_classes(truth, min_support=3) == (0, 2)


def test_out_of_fold_never_predicts_a_block_it_trained_on() -> None:
    peaks = np.arange(0, 300 * 360, 360)  # one beat a second for five minutes
    blocks = time_blocks(peaks, 360.0, 60.0)
    seen: list[tuple[set[int], set[int]]] = []

    def fit_predict(train: np.ndarray, test: np.ndarray) -> np.ndarray:
        seen.append((set(blocks[train].tolist()), set(blocks[test].tolist())))
        return np.full(test.size, 7)

    pred = out_of_fold(blocks, fit_predict, folds=5)
    assert (pred == 7).all()
    assert len(seen) == 5
    for train_blocks, test_blocks in seen:
        assert not train_blocks & test_blocks


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(ValueError):
        paired_bootstrap(np.zeros(3), np.zeros(4), np.zeros(3))
