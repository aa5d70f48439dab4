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


def test_a_seed_that_helps_one_big_record_and_hurts_the_rest_is_not_safe_by_record() -> None:
    """Beats resampled one by one trust the big record's many beats; records resampled whole do not."""
    truth_parts, base_parts, seed_parts, groups = [], [], [], []
    for r in range(6):
        n_normal, n_v = (2000, 400) if r == 0 else (150, 20)
        truth = _labels(n_normal, n_v)
        base = truth.copy()
        seed = truth.copy()
        if r == 0:
            base[n_normal:n_normal + 300] = 0  # the base misses most V beats of the big record; the seed fixes them
        else:
            seed[n_normal:] = 0  # ... but misses every V beat of the five small records
        truth_parts.append(truth), base_parts.append(base), seed_parts.append(seed), groups.append(np.full(truth.size, r))
    t, b, s, g = (np.concatenate(p) for p in (truth_parts, base_parts, seed_parts, groups))
    by_beat = paired_bootstrap(t, b, s, rounds=400, quantile=0.1)
    by_record = paired_bootstrap(t, b, s, rounds=400, quantile=0.1, groups=g)
    assert by_beat.gain == by_record.gain > 0  # the same point estimate
    assert by_beat.gain_low > 0  # one-by-one: looks safe
    assert by_record.gain_low < 0  # whole records: it hurts most records


def test_groups_must_match_the_beats() -> None:
    with pytest.raises(ValueError, match="one record per beat"):
        paired_bootstrap(np.zeros(3), np.zeros(3), np.zeros(3), groups=np.zeros(2))
