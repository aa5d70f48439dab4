"""Each anomaly, measured on the generated signal, falls in its physiological range."""

from __future__ import annotations

import numpy as np
import pytest

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.ecg.anomalies import (
    ANOMALIES,
    PAC,
    PVC,
    AtrialFibrillation,
    BundleBranchBlock,
    Fusion,
    Paced,
    SinusBradycardia,
    SinusPause,
    SinusTachycardia,
    STDepression,
    STElevation,
    SupraventricularTachycardia,
    VentricularTachycardia,
    make_anomaly,
)
from kasmina_edge.ecg.synth import random_patient, synthesize
from kasmina_edge.ecg.types import AAMI_INDEX, Record

from .helpers import qrs_width_ms

SEEDS = range(4)


def _record(seed: int, events: list, seconds: float = 120.0) -> Record:
    return synthesize(random_patient(np.random.default_rng(seed)), seconds, rng=np.random.default_rng(seed),
                      events=events)


def _in(rec: Record, a_s: float, b_s: float) -> np.ndarray:
    s = rec.beats.samples
    return np.flatnonzero((s >= a_s * rec.fs) & (s < b_s * rec.fs))


def _widths(rec: Record, idx: np.ndarray) -> np.ndarray:
    s = rec.beats.samples
    return np.array([qrs_width_ms(rec.signal, int(s[i]), rec.fs) for i in idx
                     if 60 < s[i] < rec.n_samples - 60])


def test_there_are_at_least_ten_anomaly_kinds() -> None:
    assert len(ANOMALIES) >= 10
    for needed in ("pvc", "pac", "afib", "vt", "svt", "sinus_bradycardia", "sinus_tachycardia", "bbb",
                   "st_elevation", "st_depression", "sinus_pause"):
        assert needed in ANOMALIES


@pytest.mark.parametrize("seed", SEEDS)
def test_normal_qrs_is_narrow_and_ventricular_or_blocked_qrs_is_wide(seed: int) -> None:
    rec = _record(seed, [PVC(5, 35, per_minute=12), BundleBranchBlock(40, 60, side="L"),
                         BundleBranchBlock(65, 85, side="R"), VentricularTachycardia(90, 95)])
    sym = np.array(rec.beats.symbols)
    normal = _widths(rec, np.flatnonzero(sym == "N"))
    assert normal.size > 20 and np.percentile(normal, 95) < 120.0
    for symbol in ("V", "L", "R"):
        wide = _widths(rec, np.flatnonzero(sym == symbol))
        assert wide.size >= 3, symbol
        assert wide.min() > 120.0, (symbol, wide.min())
    # AAMI: bundle-branch-block beats are class N (MIT-BIH L/R), PVCs V
    cls = rec.beats.classes
    assert np.all(cls[sym == "L"] == AAMI_INDEX["N"]) and np.all(cls[sym == "R"] == AAMI_INDEX["N"])
    assert np.all(cls[sym == "V"] == AAMI_INDEX["V"])


@pytest.mark.parametrize("seed", SEEDS)
def test_pvc_is_premature_with_full_compensatory_pause(seed: int) -> None:
    rec = _record(seed, [PVC(5, 115, per_minute=6)])
    s, sym = rec.beats.samples, rec.beats.symbols
    v = [i for i in range(1, len(s) - 1) if sym[i] == "V"]
    assert len(v) >= 8
    rr = np.diff(s) / rec.fs
    sinus = np.median(rr)
    for i in v:
        pre, post = rr[i - 1], rr[i]
        assert pre < 0.8 * sinus
        assert abs((pre + post) - 2 * sinus) < 0.2 * sinus  # compensatory: the sinus beat after is on time


@pytest.mark.parametrize("seed", SEEDS)
def test_pac_is_premature_with_an_abnormal_p_wave(seed: int) -> None:
    rec = _record(seed, [PAC(5, 115, per_minute=6)])
    s, sym, cls = rec.beats.samples, rec.beats.symbols, rec.beats.classes
    a = [i for i in range(1, len(s) - 1) if sym[i] == "A"]
    assert len(a) >= 8 and all(cls[i] == AAMI_INDEX["S"] for i in a)
    rr = np.diff(s) / rec.fs
    sinus = np.median(rr)
    x = rec.lead(0)
    normal_p = [x[int(s[i] - 0.4 * rec.fs): int(s[i] - 0.06 * rec.fs)] for i in range(1, len(s)) if sym[i] == "N"]
    for i in a:
        assert rr[i - 1] < 0.85 * sinus
        assert rr[i] > 0.85 * sinus  # sinus node reset: the next interval is a normal one
        p = x[int(s[i] - 0.4 * rec.fs): int(s[i] - 0.06 * rec.fs)]
        ref = normal_p[0][-p.shape[0]:]
        assert np.max(np.abs(p[-ref.shape[0]:] - ref)) > 0.03  # the P wave differs from a sinus P


@pytest.mark.parametrize("seed", SEEDS)
def test_atrial_fibrillation_is_irregular_without_p_waves(seed: int) -> None:
    rec = _record(seed, [AtrialFibrillation(30, 90)])
    s = rec.beats.samples
    rr_af = np.diff(s[_in(rec, 31, 90)]) / rec.fs
    rr_sinus = np.diff(s[_in(rec, 0, 29)]) / rec.fs
    cv = lambda rr: rr.std() / rr.mean()  # noqa: E731
    assert cv(rr_af) > 0.12 and cv(rr_sinus) < 0.06
    assert np.all(rec.beats.classes[_in(rec, 30, 90)] == AAMI_INDEX["N"])  # AAMI: AF beats are N
    assert any(iv.label == "AFIB" and iv.start == 30 * rec.fs for iv in rec.rhythms)
    # fibrillatory waves: 4-9 Hz activity in the electrically quiet part of each cycle (after T,
    # before the next P or QRS), in the V1-like lead, where sinus rhythm is flat
    from scipy.signal import butter, sosfiltfilt

    v1 = sosfiltfilt(butter(2, [4, 9], btype="bandpass", fs=rec.fs, output="sos"), rec.signal[:, 1])

    def quiet_rms(a: float, b: float) -> float:
        idx = _in(rec, a, b)
        parts = [v1[int(s[i] + 0.5 * (s[i + 1] - s[i])): int(s[i] + 0.66 * (s[i + 1] - s[i]))] for i in idx[:-1]]
        parts = [p for p in parts if p.size > 3]
        return float(np.sqrt(np.mean(np.concatenate(parts) ** 2)))

    assert quiet_rms(31, 90) > 2 * quiet_rms(0, 29)


@pytest.mark.parametrize("seed", SEEDS)
def test_rates_of_brady_tachy_vt_svt(seed: int) -> None:
    rec = _record(seed, [SinusBradycardia(5, 30), SinusTachycardia(35, 60), VentricularTachycardia(65, 72),
                         SupraventricularTachycardia(80, 95)])
    s, cls = rec.beats.samples, rec.beats.classes

    def rate(a: float, b: float) -> float:
        return 60.0 / float(np.mean(np.diff(s[_in(rec, a, b)]) / rec.fs))

    assert rate(7, 29) < 60
    assert rate(37, 59) > 100
    assert rate(66, 71) > 130 and np.all(cls[_in(rec, 66, 71)] == AAMI_INDEX["V"])
    assert len(_in(rec, 65, 72)) >= 3  # a run: consecutive ventricular beats
    assert rate(81, 94) > 140 and np.all(cls[_in(rec, 81, 94)] == AAMI_INDEX["S"])
    labels = {iv.label for iv in rec.rhythms}
    assert {"SBR", "STACH", "VT", "SVTA", "N"} <= labels


def _st_level(rec: Record, idx: np.ndarray) -> float:
    """ST level at R + 100 ms against the PR segment (R - 70 ms), MLII, median over beats."""
    s = rec.beats.samples
    x = rec.lead(0)
    j = int(0.10 * rec.fs)
    pr = int(0.07 * rec.fs)
    return float(np.median([x[s[i] + j] - x[s[i] - pr] for i in idx]))


@pytest.mark.parametrize("seed", SEEDS)
def test_st_elevation_and_depression_have_their_sign(seed: int) -> None:
    rec = _record(seed, [STElevation(30, 60, mv=0.2), STDepression(70, 100, mv=0.15)])
    base = _st_level(rec, _in(rec, 2, 28))
    up = _st_level(rec, _in(rec, 31, 59))
    down = _st_level(rec, _in(rec, 71, 99))
    assert up - base > 0.1
    assert down - base < -0.08
    assert {iv.label for iv in rec.anomalies} == {"st_elevation", "st_depression"}


@pytest.mark.parametrize("seed", SEEDS)
def test_sinus_pause_leaves_a_long_gap(seed: int) -> None:
    rec = _record(seed, [SinusPause(10, 110, per_minute=2), SinusPause(112, 118, per_minute=1, pause_s=3.0)])
    rr = np.diff(rec.beats.samples) / rec.fs
    sinus = np.median(rr)
    long = rr[rr > 1.6 * sinus]
    assert long.size >= 3
    assert np.any(rr >= 2.9)


def test_fusion_and_paced_beats() -> None:
    rec = _record(0, [Fusion(5, 55, per_minute=4), Paced(60, 100)])
    cls = rec.beats.classes
    assert np.sum(cls == AAMI_INDEX["F"]) >= 2
    paced = _in(rec, 61, 99)
    assert np.all(cls[paced] == AAMI_INDEX["Q"])
    rr = np.diff(rec.beats.samples[paced]) / rec.fs
    assert rr.std() < 0.005  # a pacemaker is regular


def test_make_anomaly_by_name_and_errors() -> None:
    a = make_anomaly("pvc", 0, 10, per_minute=3)
    assert isinstance(a, PVC) and a.per_minute == 3
    with pytest.raises(KasminaError, match="unknown anomaly 'nope'.*pvc"):
        make_anomaly("nope", 0, 1)
    with pytest.raises(KasminaError, match="bad parameters"):
        make_anomaly("pvc", 0, 1, speed=3)
    with pytest.raises(KasminaError, match="bad span"):
        make_anomaly("afib", 5, 1)
    with pytest.raises(KasminaError, match="side"):
        make_anomaly("bbb", 0, 1, side="X")
