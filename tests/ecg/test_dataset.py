"""Beat datasets: annotated or detected R peaks, labels, synthetic patients for training."""

from __future__ import annotations

import numpy as np
import pytest

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.ecg.dataset import (
    UNLABELLED,
    BeatDataset,
    beats_from_record,
    concat,
    nearest_labels,
    synthetic_patients,
)
from kasmina_edge.ecg.scenarios import make_scenario
from kasmina_edge.ecg.types import AAMI_INDEX
from kasmina_edge.ecg.windowing import WindowSpec

from .conftest import MITDB, needs_mitdb


def test_beats_from_annotated_and_detected_peaks_agree() -> None:
    rec = make_scenario("arrhythmia-mix", 2.0, seed=1)
    ann = beats_from_record(rec)
    det = beats_from_record(rec, use_annotations=False)
    assert isinstance(ann, BeatDataset)
    assert ann.windows.shape == (len(ann), 1, 256) and ann.rr.shape == (len(ann), 4)
    assert ann.labels.dtype == np.int64 and ann.r_peaks.dtype == np.int64
    assert set(ann.records.tolist()) == {rec.name}
    assert len(ann) >= len(rec.beats) - 2  # only beats at the very ends lack a full window
    assert abs(len(det) - len(ann)) <= 0.02 * len(ann)
    # detected peaks sit on the annotated ones and carry their class
    nearest = np.abs(det.r_peaks[:, None] - ann.r_peaks[None, :]).argmin(axis=1)
    offset = np.abs(det.r_peaks - ann.r_peaks[nearest])
    assert np.median(offset) <= 2 and np.mean(offset <= 5) > 0.95
    close = offset <= 5
    np.testing.assert_array_equal(ann.labels[nearest[close]], det.labels[close])


def test_nearest_labels_window() -> None:
    ref = np.array([100, 500, 900])
    cls = np.array([0, 2, 1])
    peaks = np.array([102, 480, 700, 953])  # 953: 53 samples (147 ms) from 900
    np.testing.assert_array_equal(nearest_labels(ref, cls, peaks, 360), [0, 2, UNLABELLED, 1])


def test_record_without_annotations_gives_unlabelled_beats() -> None:
    rec = make_scenario("clean", 1.0, seed=0)
    rec.beats = None
    ds = beats_from_record(rec)
    assert len(ds) > 50 and np.all(ds.labels == UNLABELLED)


def test_concat_and_subset() -> None:
    a = beats_from_record(make_scenario("clean", 0.5, seed=0))
    b = beats_from_record(make_scenario("clean", 0.5, seed=1))
    c = concat([a, b])
    assert len(c) == len(a) + len(b)
    assert c.record_names() == sorted({a.records[0], b.records[0]})
    assert len(c.subset(c.records == a.records[0])) == len(a)
    assert len(concat([])) == 0
    with pytest.raises(KasminaError):
        concat([a, beats_from_record(make_scenario("clean", 0.5, seed=0), WindowSpec(before=50, after=50))])


def test_wrong_rate_is_an_error() -> None:
    rec = make_scenario("clean", 0.5, fs=250.0, seed=0)
    with pytest.raises(KasminaError, match="250"):
        beats_from_record(rec)
    assert len(beats_from_record(rec, WindowSpec(fs=250.0, before=62, after=116))) > 20


def test_synthetic_patients_class_mix_and_conditions() -> None:
    recs = synthetic_patients(24, 3.0, seed=7, conditions=("clean", "emg@0"))
    assert len(recs) == 48
    assert recs[0].name == "syn7-p000" and recs[1].name == "syn7-p000-emg_0"
    assert np.array_equal(recs[0].beats.samples, recs[1].beats.samples)  # same heart, noise added
    assert recs[1].conditions[0].label == "emg" and recs[1].conditions[0].level_db == 0.0
    clean = [r for r in recs if not r.conditions]
    counts = np.zeros(5)
    for r in clean:
        counts += np.array(list(r.beats.counts().values()))
    share = counts / counts.sum()
    assert share[AAMI_INDEX["N"]] > 0.8  # mostly normal beats
    for cls in ("S", "V", "F"):
        assert share[AAMI_INDEX[cls]] > 0.001, cls
    assert share[AAMI_INDEX["V"]] > share[AAMI_INDEX["F"]]
    # patients differ
    rates = [60 / np.median(np.diff(r.beats.samples) / r.fs) for r in clean]
    assert np.std(rates) > 4
    again = synthetic_patients(2, 3.0, seed=7)
    assert np.array_equal(again[0].signal, recs[0].signal)
    with pytest.raises(KasminaError, match="unknown artifact"):
        synthetic_patients(1, 1.0, conditions=("dust@3",))


@needs_mitdb
def test_record_100_dataset() -> None:
    from kasmina_edge.ecg.wfdb_io import read_wfdb

    ds = beats_from_record(read_wfdb(MITDB / "100", leads=["MLII"]))
    assert ds.class_counts()["S"] == 33 and ds.class_counts()["V"] == 1
    assert len(ds) >= 2270
