"""The parity check (compile.parity): the bound read at call time, a miss never printed as the
bound it missed, near-ties counted among the disagreements."""

from __future__ import annotations

import numpy as np
import pytest

from kasmina_edge.compile import parity
from kasmina_edge.core.build_errors import ParityError


def _logits(flips: int, n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(n, 5)).astype(np.float32)
    got = ref.copy()
    got[:flips] = np.roll(got[:flips], 1, axis=1)  # a different argmax on the first ``flips`` rows
    return ref, got


def test_the_bound_is_read_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    ref, got = _logits(flips=0)
    assert parity.compare_logits(ref, got).ok
    monkeypatch.setattr(parity, "MIN_ARGMAX_AGREEMENT", 1.01)
    par = parity.compare_logits(ref, got)
    assert not par.ok and par.min_agreement == pytest.approx(1.01)


def test_a_miss_is_never_printed_as_the_bound_it_missed() -> None:
    par = parity.LogitParity(windows=10_000, argmax_agreement=0.98996, max_abs_error=0.1, p99_abs_error=0.1,
                             bound=1.0)  # fmt: skip
    assert "98.996 % of 10000 windows (100 differ), the bound is 99 %" in par.summary()
    with pytest.raises(ParityError, match=r"98\.996 %.*--strict refuses"):
        parity.require_parity(par, "chain")
    assert parity.compare_logits(*_logits(flips=2)).summary() == ""  # 99 % passes: nothing to say


def test_near_ties_are_counted_among_the_disagreements() -> None:
    ref = np.array([[1.0, 0.99, 0.0], [2.0, 0.0, 0.0], [0.0, 3.0, 0.0]], np.float32)
    got = np.array([[0.98, 1.0, 0.0], [0.0, 2.0, 0.0], [0.0, 3.0, 0.0]], np.float32)
    par = parity.compare_logits(ref, got, clip=(-1.0, 4.1), min_agreement=0.9)  # one int8 step: 0.02
    assert par.disagreeing == 2 and par.near_ties == 1
    assert "(2 differ, 1 of them float near-ties under one int8 logit step)" in par.summary()
