"""Record statistics: heart rate, HRV, classes, detector Se/+P, JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kasmina_edge.ecg.scenarios import make_scenario
from kasmina_edge.ecg.stats import compute_stats, hrv
from kasmina_edge.ecg.synth import PatientParams, synthesize


def test_hrv_by_hand() -> None:
    fs = 1000.0
    rr_ms = np.array([800, 850, 800, 900, 800])
    r = np.concatenate([[0], np.cumsum(rr_ms)])
    hr, sdnn, rmssd, pnn50 = hrv(r, fs)
    assert hr == pytest.approx(60000 / rr_ms.mean())
    assert sdnn == pytest.approx(np.std(rr_ms, ddof=1))
    d = np.diff(rr_ms)
    assert rmssd == pytest.approx(np.sqrt(np.mean(d**2)))
    assert pnn50 == pytest.approx(100 * np.mean(np.abs(d) > 50))
    assert hrv(np.array([5]), fs) == (None, None, None, None)


def test_stats_of_a_synthetic_record() -> None:
    rec = synthesize(PatientParams(hr_mean=66, hr_std=3), 120, rng=np.random.default_rng(0))
    s = compute_stats(rec)
    assert s.beats_from == "annotations"
    assert s.heart_rate_bpm == pytest.approx(66, abs=3)
    assert s.sdnn_ms is not None and 5 < s.sdnn_ms < 150
    assert s.class_counts == {"N": len(rec.beats), "S": 0, "V": 0, "F": 0, "Q": 0}
    assert s.detector_se is not None and s.detector_se > 0.995 and s.detector_ppv > 0.995
    data = json.loads(s.to_json())
    assert data["n_beats"] == len(rec.beats) and data["detector_tp"] + data["detector_fn"] == len(rec.beats)


def test_stats_without_annotations_and_with_conditions() -> None:
    rec = make_scenario("emg-switch", 1.0, seed=0, snr_db=6.0)
    s = compute_stats(rec)
    assert s.conditions[0]["label"] == "emg" and s.artifact_fraction["emg"] == pytest.approx(0.5, abs=0.01)
    rec.beats = None
    s = compute_stats(rec)
    assert s.beats_from == "detector" and s.class_counts is None and s.detector_se is None
    assert s.n_beats == s.n_detected > 40
    json.loads(s.to_json())
