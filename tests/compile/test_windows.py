"""The windows stage: where MIT-BIH 100 is looked for, what a request's sizes give, and a patient's
beats taking the evaluation sets' place."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import kasmina_edge
from kasmina_edge.compile.stages import windows
from kasmina_edge.compile.stages.request import BuildRequest
from kasmina_edge.compile.stages.windows import EvalSet


def _sets(n: int, name: str) -> EvalSet:
    rng = np.random.default_rng(len(name))
    return EvalSet(name, rng.normal(size=(n, 1, 8)), rng.normal(size=(n, 4)), rng.integers(0, 5, n))


def test_the_shared_data_sits_beside_the_checkout() -> None:
    checkout = Path(kasmina_edge.__file__).resolve().parents[1]
    assert windows._shared_data_dir() == checkout.parent / "shared" / "data"


def test_the_request_sizes_the_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(windows, "default_record100", lambda: None)
    req = BuildRequest(checkpoint=Path("x.pt"), seeds=None, target="x86", calibration_patients=1,
                       heldout_patients=1, minutes=0.5, parity_windows=7)  # fmt: skip
    calib, evals = windows.load_data(req)
    assert [e.name for e in evals] == ["synthetic held-out"] and evals[0].windows.shape[0] == 7
    assert calib.name == "calibration" and calib.windows.shape[0] > 7  # parity_windows limits evaluation only
    assert calib.windows.shape[1:] == evals[0].windows.shape[1:] and len(calib.rr) == len(calib.labels)


def test_a_patients_beats_replace_the_evaluation_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(windows, "load_data", lambda req: (_sets(12, "calibration"), [_sets(9, "held-out")]))
    base = BuildRequest(checkpoint=Path("x.pt"), seeds=None, target="edgetpu")
    w = windows.load_windows(base)
    assert [e.name for e in w.evals] == ["held-out"] and w.kernel_calibration is None
    assert tuple(w.calibration_x.shape) == (12, 1, 8) and str(w.calibration_x.dtype) == "torch.float32"
    patient = _sets(5, "patient")
    w = windows.load_windows(BuildRequest(checkpoint=Path("x.pt"), seeds=None, target="edgetpu", kernel_beats=patient))
    assert w.evals == [patient] and w.kernel_calibration is not None
    assert np.allclose(w.kernel_calibration[0].numpy(), patient.windows) and tuple(w.kernel_calibration[1].shape) == (5, 4)
    empty = EvalSet("patient", patient.windows[:0], patient.rr[:0], patient.labels[:0])
    w = windows.load_windows(BuildRequest(checkpoint=Path("x.pt"), seeds=None, target="edgetpu", kernel_beats=empty))
    assert [e.name for e in w.evals] == ["held-out"] and w.kernel_calibration is None  # no beats: population sets
