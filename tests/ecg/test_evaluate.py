"""Beat-by-beat evaluation (matching: test_beat_match.py): per-class Se/+P/F1 with missed and extra beats,
gross pooling, run logs, alignment of a stream started part-way, and the CLI (record 100)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from kasmina_edge.ecg.evaluate import (
    EvaluationError,
    estimate_offset,
    evaluate_beats,
    evaluate_record,
    gross,
    read_predictions,
)
from kasmina_edge.ecg.types import Beats

FS = 360.0


def _beats(n: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    samples = np.cumsum(rng.integers(250, 330, n)).astype(np.int64)
    classes = rng.choice(5, size=n, p=[0.7, 0.1, 0.15, 0.05, 0.0])
    return samples, classes


def test_perfect_predictions_score_one() -> None:
    s, c = _beats()
    ev = evaluate_beats(s, c, s + 3, c, FS)
    for cls in ("N", "S", "V", "F"):
        assert ev.se(cls) == 1.0 and ev.ppv(cls) == 1.0 and ev.f1(cls) == 1.0
    assert ev.macro_f1() == 1.0
    assert ev.beat_se == 1.0 and ev.beat_ppv == 1.0


def test_missed_and_extra_beats_count_against_their_classes() -> None:
    ref = np.array([1000, 2000, 3000, 4000, 5000])
    ref_c = ["N", "V", "V", "N", "S"]
    pred = np.array([1000, 2000, 4000, 5000, 6000])  # the V at 3000 missed; an extra V at 6000
    pred_c = ["N", "V", "V", "N", "V"]  # 4000 (N) called V, 5000 (S) called N
    ev = evaluate_beats(ref, ref_c, pred, pred_c, FS)
    assert ev.se("V") == pytest.approx(1 / 2)  # one of two V found and called V (the other missed)
    assert ev.ppv("V") == pytest.approx(1 / 3)  # three V predictions: one right, one N, one extra
    assert ev.se("S") == 0.0
    assert ev.se("N") == pytest.approx(1 / 2)
    assert ev.ppv("N") == pytest.approx(1 / 2)
    assert ev.confusion[2, 5] == 1  # V missed
    assert ev.confusion[5, 2] == 1  # extra V
    assert (ev.reference_beats, ev.predicted_beats, ev.matched) == (5, 5, 4)
    f1_v = 2 * (1 / 2) * (1 / 3) / (1 / 2 + 1 / 3)
    assert ev.f1("V") == pytest.approx(f1_v)
    # F is absent from the reference: not in the macro average
    assert math.isnan(ev.f1("F"))
    assert ev.macro_f1() == pytest.approx(np.mean([ev.f1("N"), ev.f1("S"), f1_v]))


def test_gross_pools_confusions_not_ratios() -> None:
    a = evaluate_beats(np.array([100, 500]), ["V", "V"], np.array([100, 500]), ["V", "N"], FS, name="a")
    b = evaluate_beats(
        np.array([100 + k * 400 for k in range(8)]),
        ["V"] * 8,
        np.array([100 + k * 400 for k in range(8)]),
        ["V"] * 8,
        FS,
        name="b",
    )
    g = gross([a, b])
    assert g.se("V") == pytest.approx(9 / 10)  # not the mean of 0.5 and 1.0
    assert np.array_equal(g.confusion, a.confusion + b.confusion)
    assert g.to_dict()["records"] == ["a", "b"]
    assert (a + b).se("V") == g.se("V")


def test_span_restricts_both_sides() -> None:
    s, c = _beats(300)
    half = float(s[150]) / FS
    ev = evaluate_beats(s, c, s, c, FS, start_s=half)
    assert ev.reference_beats == int(np.sum(s >= s[150]))
    assert ev.beat_se == 1.0


def test_offset_estimate_finds_the_stream_start() -> None:
    s, c = _beats(400, seed=3)
    start = int(s[120]) - 200  # the stream began 200 samples before beat 120
    pred = s[120:] - start
    off, frac = estimate_offset(s, pred, FS)
    assert off == start and frac == 1.0
    ev = evaluate_record(Beats(s, c.astype(np.int8)), pred, c[120:], FS, start_s=start / FS)
    assert ev.offset_samples == start and ev.se("V") == 1.0 and ev.reference_beats == 400 - 120


def test_unaligned_predictions_are_refused() -> None:
    s, c = _beats(100)
    rng = np.random.default_rng(1)
    noise = np.sort(rng.integers(0, int(s[-1]), 100))
    with pytest.raises(EvaluationError, match="line up"):
        evaluate_record(Beats(s, c.astype(np.int8)), noise, ["N"] * 100, FS)


def test_bad_classes_are_one_clear_error() -> None:
    with pytest.raises(EvaluationError, match="'X' at beat 1 is not an AAMI class"):
        evaluate_beats(np.array([1, 2]), ["N", "N"], np.array([1, 2]), ["N", "X"], FS)


def _write_log(path: Path, samples: np.ndarray, classes: list[str]) -> None:
    lines = [json.dumps({"event": "run", "source": "wfdb:x"}), json.dumps({"event": "boot"})]
    lines += [
        json.dumps({"event": "beat", "sample": int(s), "class": c, "p": 0.9})
        for s, c in zip(samples, classes, strict=True)
    ]
    lines.append(json.dumps({"event": "stop"}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_read_predictions(tmp_path: Path) -> None:
    log = tmp_path / "run.jsonl"
    _write_log(log, np.array([10, 20]), ["N", "V"])
    p = read_predictions(log)
    assert p.samples.tolist() == [10, 20] and p.classes == ["N", "V"] and p.source == "wfdb:x"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"event": "beat", "sample": 1, "class": "N"}\nnot json\n', encoding="utf-8")
    with pytest.raises(EvaluationError, match=r"bad.jsonl:2: not JSON"):
        read_predictions(bad)
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"event": "run"}\n', encoding="utf-8")
    with pytest.raises(EvaluationError, match="no beat predictions"):
        read_predictions(empty)
    with pytest.raises(EvaluationError, match="not found"):
        read_predictions(tmp_path / "missing.jsonl")
