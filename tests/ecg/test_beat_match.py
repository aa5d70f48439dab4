"""The one beat matcher (EC57 rule): one to one within 150 ms inclusive, closest pairs first, indices into the
arrays as given; Se/+P; on record 100 with real noise it pairs as wfdb's Comparitor does."""

from __future__ import annotations

import numpy as np
import pytest

from kasmina_edge.ecg.beat_match import MATCH_WINDOW_S, match_beats, sensitivity_ppv

from .conftest import MITDB, NSTDB, needs_mitdb

FS = 360.0


def _pairs(ref: list[int], det: list[int]) -> list[tuple[int, int]]:
    p = match_beats(np.array(ref), np.array(det), FS)
    return list(zip(p.ref.tolist(), p.pred.tolist(), strict=True))


def test_window_is_150_ms_inclusive() -> None:
    assert MATCH_WINDOW_S == 0.15
    w = int(round(MATCH_WINDOW_S * FS))  # 54 samples at 360 Hz
    assert _pairs([1000], [1000 + w]) == [(0, 0)]
    assert _pairs([1000], [1000 - w]) == [(0, 0)]
    assert _pairs([1000], [1000 + w + 1]) == []


def test_counts_missed_and_extra() -> None:
    ref = np.array([100, 400, 700, 1000])
    det = np.array([105, 390, 760, 1500, 1501])  # 760 is 60 samples (167 ms) off: no match
    p = match_beats(ref, det, FS)
    assert p.counts == (2, 3, 2)
    assert p.missed.tolist() == [2, 3] and p.extra.tolist() == [2, 3, 4]
    assert match_beats(ref, ref, FS).counts == (4, 0, 0)


def test_one_detection_matches_one_reference_beat() -> None:
    assert match_beats(np.array([100, 110]), np.array([105]), FS).counts == (1, 0, 1)
    assert match_beats(np.array([105]), np.array([100, 110]), FS).counts == (1, 1, 0)


def test_a_contested_detection_goes_to_the_closer_reference_beat() -> None:
    # 130 is within the window of both 100 and 140; in time order 100 would take it, EC57 (bxb) gives it
    # to 140, the closer one, and 100 is missed
    assert _pairs([100, 140], [130]) == [(1, 0)]
    # 150 is 50 from 100 and 10 from 160: 160 takes it, 100 takes 90
    assert _pairs([100, 160], [90, 150]) == [(0, 0), (1, 1)]


def test_indices_refer_to_the_arrays_as_given() -> None:
    ref = np.array([700, 100, 400])
    det = np.array([410, 2000, 95, 705])
    p = match_beats(ref, det, FS)
    assert list(zip(p.ref.tolist(), p.pred.tolist(), strict=True)) == [(0, 3), (1, 2), (2, 0)]
    assert p.extra.tolist() == [1] and p.missed.size == 0


def test_empty_sides() -> None:
    assert match_beats(np.array([]), np.array([10, 20]), FS).counts == (0, 2, 0)
    assert match_beats(np.array([10, 20]), np.array([]), FS).counts == (0, 0, 2)
    assert match_beats(np.array([]), np.array([]), FS).counts == (0, 0, 0)


def test_sensitivity_and_positive_predictivity() -> None:
    se, ppv = sensitivity_ppv(2, 3, 2)
    assert se == pytest.approx(0.5) and ppv == pytest.approx(0.4)
    assert np.isnan(sensitivity_ppv(0, 0, 0)[0]) and np.isnan(sensitivity_ppv(0, 0, 0)[1])


@needs_mitdb
@pytest.mark.skipif(not (NSTDB / "ma.hea").exists(), reason=f"NSTDB noise records not found under {NSTDB}")
@pytest.mark.parametrize("snr_db", [None, -6.0])
def test_pairs_equal_wfdb_comparitor_on_record_100(snr_db: float | None) -> None:
    """Cross-check with PhysioNet's Python comparator: the same pairs on a real record, clean and at -6 dB
    of real muscle noise (where false detections crowd the reference beats)."""
    processing = pytest.importorskip("wfdb.processing")
    from kasmina_edge.ecg.noise import nstdb_mix
    from kasmina_edge.ecg.qrs import detect_qrs
    from kasmina_edge.ecg.wfdb_io import read_wfdb

    rec = read_wfdb(MITDB / "100", seconds=600.0)
    if snr_db is not None:
        rec = nstdb_mix(rec, "ma", snr_db, np.random.default_rng(100), first_clean_s=60.0)
    assert rec.beats is not None
    ref, det = rec.beats.samples.astype(np.int64), detect_qrs(rec.lead(0), rec.fs)
    ours = match_beats(ref, det, rec.fs)
    if snr_db is not None:
        assert ours.fp + ours.fn > 10  # the noise did make contested beats
    w = int(round(MATCH_WINDOW_S * rec.fs))
    theirs = processing.Comparitor(ref, det, w + 1)  # its window is strict: w + 1 allows the same pairs
    theirs.compare()
    matched = theirs.matched_ref_inds
    assert ours.ref.tolist() == matched.tolist()
    assert ours.pred.tolist() == theirs.matching_sample_nums[matched].tolist()
