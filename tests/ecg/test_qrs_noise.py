"""QRS detection in real noise (issue 15 item 4): NSTDB-style mixing, floors on short mixed records, the Q flag."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.ecg.artifacts import qrs_signal_power
from kasmina_edge.ecg.beat_match import match_beats, sensitivity_ppv
from kasmina_edge.ecg.noise import noisy_stretches, nstdb_mix
from kasmina_edge.ecg.qrs import detect_qrs
from kasmina_edge.ecg.quality import (
    READABLE_MIN_RATIO,
    calibrate_threshold,
    detect_qrs_with_quality,
    quality_track,
)
from kasmina_edge.ecg.synth import random_patient, synthesize
from kasmina_edge.ecg.types import AAMI_INDEX, ARTIFACT_BITS, Record

from .conftest import MITDB, NSTDB, have_mitdb

# Issue 15 item 4: (Se, +P) floors per SNR, on the noisy stretches.
FLOORS = {6.0: (0.99, 0.95), 0.0: (0.95, 0.88)}
# Short mixed records: every DS1 record, 5 min each: 1 min clean, then 1 min noisy / 1 min clean (NSTDB's
# scheme, shortened): 44 noisy minutes in all. All 22 records, not a chosen few: the record and the noise
# excerpt both move the figures (ma 0 dB +P spans 88-92 % between excerpts), so fewer minutes would test luck.
RECORDS = ("101", "106", "108", "109", "112", "114", "115", "116", "118", "119", "122", "124", "201", "203",
           "205", "207", "208", "209", "215", "220", "223", "230")
SHORT = {"first_clean_s": 60.0, "stretch_s": 60.0}

needs_real = pytest.mark.skipif(
    not ((NSTDB / "ma.hea").exists() and all(have_mitdb(r) for r in RECORDS)),
    reason=f"needs MIT-BIH {', '.join(RECORDS)} under {MITDB} and NSTDB bw/ma under {NSTDB}",
)


@lru_cache(maxsize=32)  # the floors tests read the same 22 records four times
def _read(record: str, seconds: float = 300.0) -> Record:
    from kasmina_edge.ecg.wfdb_io import read_wfdb

    return read_wfdb(MITDB / record, seconds=seconds)


def _noisy_counts(rec: Record) -> tuple[int, int, int]:
    on = np.zeros(rec.n_samples, dtype=bool)
    for c in rec.conditions:
        on[c.start: c.end] = True
    assert rec.beats is not None
    det = detect_qrs(rec.lead(0), rec.fs)
    ref = rec.beats.samples
    return match_beats(ref[on[ref]], det[on[np.clip(det, 0, rec.n_samples - 1)]], rec.fs).counts


def test_noisy_stretches_follow_nstdb() -> None:
    fs = 360.0
    spans = noisy_stretches(int(30 * 60 * fs), fs)
    assert spans[0] == (int(300 * fs), int(420 * fs))  # clean first 5 min, then 2 min of noise
    assert all(b - a == int(120 * fs) for a, b in spans[:-1])
    assert all(spans[i + 1][0] - spans[i][1] == int(120 * fs) for i in range(len(spans) - 1))  # 2 min clean between
    assert noisy_stretches(int(200 * fs), fs) == []
    with pytest.raises(KasminaError, match="stretch_s"):
        noisy_stretches(1000, fs, stretch_s=0)


@pytest.mark.skipif(not (NSTDB / "ma.hea").exists(), reason=f"NSTDB noise records not found under {NSTDB}")
@pytest.mark.parametrize("snr_db", [6.0, 0.0, -6.0])
def test_mixed_noise_meets_the_snr_only_in_the_noisy_stretches(snr_db: float) -> None:
    rng = np.random.default_rng(3)
    clean = synthesize(random_patient(rng), 300.0, rng=rng)
    noisy = nstdb_mix(clean, "ma", snr_db, np.random.default_rng(0), **SHORT)
    added = noisy.signal.astype(np.float64) - clean.signal.astype(np.float64)
    on = (noisy.artifact_mask & ARTIFACT_BITS["emg"]) != 0
    assert on.mean() == pytest.approx(2 / 5, abs=0.01)  # minutes 1-2 and 3-4 of 5
    assert np.abs(added[~on]).max() < 1e-5  # clean stretches untouched
    for lead in range(noisy.signal.shape[1]):
        n = added[on, lead] - added[on, lead].mean()
        snr = 10 * np.log10(qrs_signal_power(clean, lead) / np.mean(n * n))
        assert snr == pytest.approx(snr_db, abs=0.05)
    assert [c.source for c in noisy.conditions] == ["nstdb:ma", "nstdb:ma"]
    with pytest.raises(KasminaError, match="real noise"):
        nstdb_mix(clean, "electrode_motion", 0.0, rng)


@needs_real
@pytest.mark.parametrize("kind", ["bw", "ma"])
@pytest.mark.parametrize("snr_db", [6.0, 0.0])
def test_noisy_record_qrs_floors(kind: str, snr_db: float) -> None:
    tp = fp = fn = 0
    for record in RECORDS:
        rec = nstdb_mix(_read(record), kind, snr_db, np.random.default_rng(int(record)), **SHORT)
        t, f, n = _noisy_counts(rec)
        tp, fp, fn = tp + t, fp + f, fn + n
    se, ppv = sensitivity_ppv(tp, fp, fn)
    assert tp + fn > 3000  # enough beats that the floors mean something
    se_min, ppv_min = FLOORS[snr_db]
    assert se >= se_min and ppv >= ppv_min, (kind, snr_db, tp, fp, fn)


@needs_real
def test_quality_flag_marks_unreadable_noise_and_spares_clean_signal() -> None:
    rec = _read("119")
    clean = detect_qrs_with_quality(rec.lead(0), rec.fs)
    assert clean.readable.mean() >= 0.99  # clean MIT-BIH: (almost) nothing flagged
    bad = nstdb_mix(rec, "ma", -12.0, np.random.default_rng(0), **SHORT)
    res = detect_qrs_with_quality(bad.lead(0), bad.fs)
    on = (bad.artifact_mask & ARTIFACT_BITS["emg"]) != 0
    in_noise = on[np.clip(res.peaks, 0, bad.n_samples - 1)]
    assert (~res.readable[in_noise]).mean() >= 0.7  # -12 dB muscle noise: mostly unreadable
    assert res.readable[~in_noise].mean() >= 0.95  # the clean minutes around it stay readable
    beats = res.as_beats()
    assert np.array_equal(beats.classes == AAMI_INDEX["Q"], ~res.readable)
    # the flagged beats are where the detector errs: readable-only +P beats all-beats +P
    assert bad.beats is not None
    ref = bad.beats.samples
    se_all, ppv_all = sensitivity_ppv(*match_beats(ref, res.peaks, rec.fs).counts)
    ok_ref = res.track.readable_at(ref)
    se_rd, ppv_rd = sensitivity_ppv(*match_beats(ref[ok_ref], res.peaks[res.readable], rec.fs).counts)
    assert ppv_rd > ppv_all + 0.02 and se_rd >= se_all


def test_quality_flag_on_flat_and_on_pure_noise() -> None:
    fs = 360.0
    flat = detect_qrs_with_quality(np.zeros(int(20 * fs)), fs)
    assert flat.peaks.size == 0 and not flat.track.readable.any()
    noise = np.random.default_rng(0).normal(size=int(60 * fs))
    res = detect_qrs_with_quality(noise, fs)
    assert res.track.unreadable_fraction() >= 0.9
    rng = np.random.default_rng(1)
    ecg = synthesize(random_patient(rng), 60.0, rng=rng)
    good = detect_qrs_with_quality(ecg.lead(0), ecg.fs)
    assert good.readable.all() and good.track.unreadable_spans() == []


def test_quality_track_spans_and_calibration() -> None:
    fs = 100.0
    rng = np.random.default_rng(2)
    ecg = synthesize(random_patient(rng), 60.0, fs=fs, rng=rng)
    x = ecg.lead(0).astype(np.float64)
    x[int(20 * fs): int(30 * fs)] = 0.0  # 10 s lead-off
    track = quality_track(x, fs, detect_qrs(x, fs))
    assert track.unreadable_spans() == [(int(20 * fs), int(30 * fs))]
    # calibration: the largest threshold that flags at most the budget of clean beats
    ratios = np.array([3.0, 10.0, 12.0, 20.0])
    beats = np.array([1, 500, 300, 200])
    assert calibrate_threshold(ratios, beats, budget=0.001) == 10.0  # flags the 3.0 window only (1 of 1001 beats)
    assert calibrate_threshold(ratios, beats, budget=0.0) == 3.0  # flags nothing
    with pytest.raises(KasminaError, match="no clean windows"):
        calibrate_threshold(np.zeros(0), np.zeros(0))
    assert READABLE_MIN_RATIO > 1.0


@needs_real
def test_streaming_equals_batch_in_muscle_noise() -> None:
    # the noise rules (premature candidates, MWI floor) must not depend on how the signal is chunked
    from kasmina_edge.ecg.qrs import QrsDetector

    rec = nstdb_mix(_read("208"), "ma", 0.0, np.random.default_rng(1), **SHORT)
    x = rec.lead(0)
    batch = detect_qrs(x, rec.fs)
    rng = np.random.default_rng(0)
    det = QrsDetector(rec.fs)
    out: list[int] = []
    i = 0
    while i < x.shape[0]:
        n = int(rng.integers(1, 700))
        out += det.process(x[i: i + n])
        i += n
    out += det.flush()
    assert np.array_equal(np.asarray(out), batch)
