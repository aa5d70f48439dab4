"""The accuracy stage: a missed parity bound is recorded (the default) or stops a strict build."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from kasmina_edge.compile.stages import accuracy
from kasmina_edge.compile.stages.windows import EvalSet


def _parity_case(monkeypatch: pytest.MonkeyPatch, flips: int) -> tuple[Any, tuple[Any, ...]]:
    """A reference chain and an 'artifact' chain that disagree on ``flips`` of 200 windows."""
    from kasmina_edge.compile import chain
    from kasmina_edge.compile.report import BuildReport

    rng = np.random.default_rng(0)
    ref = rng.normal(size=(200, 5)).astype(np.float32)
    got = ref.copy()
    got[:flips] = np.roll(got[:flips], 1, axis=1)  # a different argmax on the first ``flips`` rows
    monkeypatch.setattr(chain, "torch_chain", lambda *a, **k: ref)
    ev = EvalSet("synthetic held-out", np.zeros((200, 1, 8), np.float32), np.zeros((200, 4), np.float32),
                 ref.argmax(1))  # fmt: skip
    report = BuildReport(target="edgetpu", profile="coral-usb", bits=8, format="tflite-int8")
    model = SimpleNamespace(classes=("N", "S", "V", "F", "Q"))
    run = (report, model, [ev], [("base", None, {})], lambda *a: got, (-10.0, 10.0))
    return report, run


def test_a_missed_parity_bound_is_recorded_by_default_and_stops_a_strict_build(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kasmina_edge.core.build_errors import ParityError

    report, run = _parity_case(monkeypatch, flips=4)  # 98 % agreement: below the 99 % limit
    with pytest.raises(
        ParityError, match=r"98\.00 % of 200 windows \(4 differ\), the bound is 99 %.*--strict"
    ):
        accuracy.judge_accuracy(*run, strict=True)
    report, run = _parity_case(monkeypatch, flips=4)
    (miss,) = accuracy.judge_accuracy(*run)  # the default: recorded, not raised
    assert miss.record["chain"] == "base" and miss.record["argmax_agreement"] == pytest.approx(0.98)
    assert not miss.record["ok"]
    assert miss.warning.startswith("edgetpu chain (base) on synthetic held-out: argmax agrees with torch on 98.00 %")
    assert "the bound is 99 %" in miss.warning and "--strict" in miss.warning
    assert any(n.startswith("PARITY BOUND MISSED: edgetpu chain (base)") for n in report.notes)
    assert report.accuracy[0].argmax_agreement == pytest.approx(0.98)
    manifest = accuracy.parity_record([miss])
    assert manifest["ok"] is False and manifest["missed"][0]["windows"] == 200
    assert "warning" not in manifest["missed"][0] and manifest["missed"][0]["dataset"] == "synthetic held-out"
    report, run = _parity_case(monkeypatch, flips=1)  # 99.5 %: passes, nothing noted
    assert accuracy.judge_accuracy(*run, strict=True) == []
    assert not report.notes and accuracy.parity_record([])["ok"] is True


def test_common_class_figures_leave_out_classes_with_few_beats(monkeypatch: pytest.MonkeyPatch) -> None:
    """One V beat of 200, classified wrong: the all-class macro-F1 drops, the common-class one does not."""
    from kasmina_edge.compile import chain
    from kasmina_edge.compile.report import BuildReport

    labels = np.zeros(200, np.int64)
    labels[100:] = 1  # N and S, 100 beats each
    labels[0] = 2  # one V beat
    ref = np.eye(5, dtype=np.float32)[labels] * 4.0
    got = ref.copy()
    got[0] = np.eye(5, dtype=np.float32)[0] * 4.0  # the V beat called N
    monkeypatch.setattr(chain, "torch_chain", lambda *a, **k: ref)
    ev = EvalSet("x", np.zeros((200, 1, 8), np.float32), np.zeros((200, 4), np.float32), labels)
    report = BuildReport(target="x86", profile="x86-host", bits=8, format="onnx-qdq")
    model = SimpleNamespace(classes=("N", "S", "V", "F", "Q"))
    accuracy.judge_accuracy(report, model, [ev], [("base", None, {})], lambda *a: got, (-10.0, 10.0))
    (row,) = report.accuracy
    assert row.class_support == [99, 100, 1, 0, 0]
    assert row.quant_macro_f1 < row.fp32_macro_f1
    assert row.quant_macro_f1_common == pytest.approx(row.fp32_macro_f1_common, abs=0.01)
