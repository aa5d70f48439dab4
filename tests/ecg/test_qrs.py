"""QRS detection: MIT-BIH record 100, clean synthetic ECG, batch == streaming."""

from __future__ import annotations

import numpy as np
import pytest

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.ecg.beat_match import match_beats, sensitivity_ppv
from kasmina_edge.ecg.qrs import QrsDetector, detect_qrs
from kasmina_edge.ecg.synth import random_patient, synthesize

from .conftest import MITDB, have_mitdb, needs_mitdb


@needs_mitdb
def test_record_100_whole_mlii_se_and_ppv_at_least_99_percent() -> None:
    from kasmina_edge.ecg.wfdb_io import read_wfdb

    rec = read_wfdb(MITDB / "100", leads=["MLII"])
    assert rec.beats is not None and len(rec.beats) == 2273  # every beat annotation, AAMI classes
    det = detect_qrs(rec.lead(0), rec.fs)
    tp, fp, fn = match_beats(rec.beats.samples, det, rec.fs, window_s=0.15).counts
    se, ppv = sensitivity_ppv(tp, fp, fn)
    assert se >= 0.99 and ppv >= 0.99, (tp, fp, fn)


@pytest.mark.parametrize("record", ["101", "106", "119", "208"])
def test_ds1_records_reasonable(record: str) -> None:
    if not have_mitdb(record):
        pytest.skip(f"MIT-BIH record {record} not found under {MITDB}")
    from kasmina_edge.ecg.wfdb_io import read_wfdb

    rec = read_wfdb(MITDB / record, leads=["MLII"], seconds=600)
    det = detect_qrs(rec.lead(0), rec.fs)
    se, ppv = sensitivity_ppv(*match_beats(rec.beats.samples, det, rec.fs).counts)
    assert se >= 0.98 and ppv >= 0.98, (record, se, ppv)


@pytest.mark.parametrize("seed", range(8))
def test_clean_synthetic_at_least_99_5_percent(seed: int) -> None:
    rng = np.random.default_rng(seed)
    rec = synthesize(random_patient(rng), 300, rng=rng)
    det = detect_qrs(rec.lead(0), rec.fs)
    se, ppv = sensitivity_ppv(*match_beats(rec.beats.samples, det, rec.fs).counts)
    assert se >= 0.995 and ppv >= 0.995, (seed, se, ppv)


def test_r_peaks_land_on_the_labelled_sample() -> None:
    rec = synthesize(random_patient(np.random.default_rng(1)), 60, rng=np.random.default_rng(1))
    det = detect_qrs(rec.lead(0), rec.fs)
    ref = rec.beats.samples
    nearest = det[np.abs(det[:, None] - ref[None, :]).argmin(axis=0)]
    assert np.median(np.abs(nearest - ref)) <= 1


def test_streaming_equals_batch_for_any_chunking_with_bounded_delay() -> None:
    rng = np.random.default_rng(0)
    rec = synthesize(random_patient(rng), 120, rng=rng)
    x = rec.lead(0)
    batch = detect_qrs(x, rec.fs)
    for max_chunk in (1, 37, 360, 5000):
        if max_chunk == 1:  # sample by sample: 20 s are enough (and keep the test fast)
            x1 = x[: int(20 * rec.fs)]
            det = QrsDetector(rec.fs)
            one = [p for i in range(x1.shape[0]) for p in det.process(x1[i: i + 1])] + det.flush()
            assert np.array_equal(np.asarray(one), detect_qrs(x1, rec.fs))
            continue
        det = QrsDetector(rec.fs)
        out: list[int] = []
        delays: list[int] = []
        i = 0
        while i < x.shape[0]:
            n = int(rng.integers(1, max_chunk + 1))
            got = det.process(x[i: i + n])
            i += n
            out += got
            delays += [i - g for g in got]
        out += det.flush()
        assert np.array_equal(np.asarray(out), batch), max_chunk
        # learning phase included, beats come out within ~3 s of the sample that completes them
        assert max(delays) < 3.0 * rec.fs + max_chunk


def test_no_beats_in_a_flat_signal_and_few_on_noise() -> None:
    assert detect_qrs(np.zeros(3600), 360).size == 0
    det = detect_qrs(np.zeros(10), 360)
    assert det.size == 0


def test_bad_input() -> None:
    x = np.zeros(1000)
    x[500] = np.nan
    with pytest.raises(KasminaError, match="NaN"):
        detect_qrs(x, 360)
    with pytest.raises(KasminaError, match="1-D"):
        detect_qrs(np.zeros((100, 2)), 360)
    with pytest.raises(KasminaError, match="sample rate"):
        QrsDetector(10.0)


def test_fast_sosfilt_matches_scipy() -> None:
    from scipy.signal import butter, sosfilt

    from kasmina_edge.ecg.qrs import sosfilt_state

    sos = butter(2, [5, 15], btype="bandpass", fs=360, output="sos")
    x = np.random.default_rng(0).normal(size=1000)
    zi = np.random.default_rng(1).normal(size=(2, 2))
    y_ref, z_ref = sosfilt(sos, x, zi=zi)
    y, z = sosfilt_state(sos, x, zi)
    assert np.array_equal(y, y_ref) and np.array_equal(z, z_ref)
    assert zi.shape == (2, 2) and not np.array_equal(zi, z)  # the caller's state is not modified in place
