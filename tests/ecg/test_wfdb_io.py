"""WFDB: MIT-BIH read with AAMI classes, resampling, synthetic round trip, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.ecg.scenarios import make_scenario
from kasmina_edge.ecg.types import AAMI_INDEX
from kasmina_edge.ecg.wfdb_io import MITBIH_TO_AAMI, read_wfdb, symbol_to_class, write_wfdb

from .conftest import MITDB, needs_mitdb

pytest.importorskip("wfdb", reason="the wfdb extra is not installed")


def test_symbol_mapping_follows_aami() -> None:
    groups = {"N": "NLRej", "S": "AaJS", "V": "VE", "F": "F", "Q": "/fQ"}
    for cls, symbols in groups.items():
        for s in symbols:
            assert MITBIH_TO_AAMI[s] == cls
            assert symbol_to_class(s) == AAMI_INDEX[cls]
    for non_beat in ["+", "~", "|", "x", "!", "[", "]", '"']:
        assert symbol_to_class(non_beat) is None
    with pytest.raises(KasminaError, match="unknown annotation symbol 'Z'"):
        symbol_to_class("Z")
    assert symbol_to_class("Z", unknown="q") == AAMI_INDEX["Q"]
    assert symbol_to_class("Z", unknown="skip") is None


@needs_mitdb
def test_read_record_100_counts_match_the_readme() -> None:
    rec = read_wfdb(MITDB / "100")
    assert rec.fs == 360.0 and rec.signal.shape == (650000, 2) and rec.lead_names == ["MLII", "V5"]
    assert rec.beats.counts() == {"N": 2239, "S": 33, "V": 1, "F": 0, "Q": 0}
    assert rec.rhythms[0].label == "N"
    part = read_wfdb(MITDB / "100", leads=["V5"], start_s=60, seconds=10)
    assert part.signal.shape == (3600, 1) and part.lead_names == ["V5"]
    assert np.all((part.beats.samples >= 0) & (part.beats.samples < 3600))
    assert part.rhythms and part.rhythms[0].start == 0  # the rhythm begun before the span still holds


@needs_mitdb
def test_resampling_rescales_annotations() -> None:
    full = read_wfdb(MITDB / "100", leads=["MLII"], seconds=60)
    low = read_wfdb(MITDB / "100", leads=["MLII"], seconds=60, fs=250)
    assert low.signal.shape[0] == 15000 and low.fs == 250
    assert len(low.beats) == len(full.beats)
    np.testing.assert_allclose(low.beats.samples / 250, full.beats.samples / 360, atol=1 / 250)
    # the R peaks are still on the peaks after resampling
    x = low.lead(0)
    for r in low.beats.samples[1:-1]:
        assert abs(int(np.argmax(x[r - 5: r + 6])) - 5) <= 1


def test_synthetic_round_trip(tmp_path: Path) -> None:
    rec = make_scenario("artifact-tour", 1.0, seed=3)
    rec2 = make_scenario("arrhythmia-mix", 1.0, seed=3)
    for r in (rec, rec2):
        base = write_wfdb(r, tmp_path / "out")
        back = read_wfdb(base, fs=r.fs)
        assert back.signal.shape == r.signal.shape
        clipped = np.clip(r.signal, -32.767, 32.767)
        assert np.max(np.abs(back.signal - clipped)) <= 0.0006  # 1 uV steps
        assert back.lead_names == r.lead_names
        np.testing.assert_array_equal(back.beats.samples, r.beats.samples)
        np.testing.assert_array_equal(back.beats.classes, r.beats.classes)
        assert back.beats.symbols == r.beats.symbols
        assert [(i.start, i.end, i.label) for i in back.rhythms] == [(i.start, i.end, i.label) for i in r.rhythms]
        assert back.conditions == r.conditions
        assert back.anomalies == r.anomalies
        np.testing.assert_array_equal(back.artifact_mask if back.artifact_mask is not None else 0,
                                      r.artifact_mask if r.artifact_mask.any() else 0)
    assert {p.suffix for p in (tmp_path / "out").iterdir()} >= {".hea", ".dat", ".atr", ".cnd", ".art", ".evt"}
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temp left behind


def test_missing_empty_truncated_and_bad_header(tmp_path: Path) -> None:
    with pytest.raises(KasminaError, match="header not found.*nothing.hea"):
        read_wfdb(tmp_path / "nothing")
    rec = make_scenario("clean", 0.5, seed=1)
    base = write_wfdb(rec, tmp_path)
    dat = base.with_name(base.name + ".dat")
    data = dat.read_bytes()
    dat.write_bytes(data[: len(data) // 2])
    with pytest.raises(KasminaError, match=r"truncated: .*\.dat"):
        read_wfdb(base)
    dat.write_bytes(b"")
    with pytest.raises(KasminaError, match=r"empty: .*\.dat"):
        read_wfdb(base)
    dat.unlink()
    with pytest.raises(KasminaError, match=r"not found: .*\.dat"):
        read_wfdb(base)
    hea = base.with_name(base.name + ".hea")
    hea.write_text("this is not a header\n")
    with pytest.raises(KasminaError, match=r"\.hea"):
        read_wfdb(base)


def test_bad_rate_lead_and_span(tmp_path: Path) -> None:
    base = write_wfdb(make_scenario("clean", 0.5, seed=1), tmp_path)
    with pytest.raises(KasminaError, match="not supported"):
        read_wfdb(base, fs=0)
    with pytest.raises(KasminaError, match="no lead named 'V6'.*MLII"):
        read_wfdb(base, leads=["V6"])
    with pytest.raises(KasminaError, match="past the end"):
        read_wfdb(base, start_s=1000)
