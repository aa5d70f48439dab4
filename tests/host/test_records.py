"""Real records for training (host.records): the default patient-wise split, record names, the lead by name or
index."""

from __future__ import annotations

from pathlib import Path

import pytest

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.ecg.dataset import synthetic_patients
from kasmina_edge.ecg.wfdb_io import read_wfdb, write_wfdb
from kasmina_edge.host.records import (
    DS1,
    RecordSummary,
    choose_validation,
    parse_data_spec,
    parse_record_names,
    plan_split,
)


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three short annotated synthetic records."""
    folder = tmp_path_factory.mktemp("synth")
    for rec in synthetic_patients(3, 0.5, seed=4):
        write_wfdb(rec, folder)
    return folder


def _names(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.hea"))


def _summary(name: str, n: int = 100, s: int = 0, v: int = 0, f: int = 0) -> RecordSummary:
    return RecordSummary(name, 360.0, "MLII", (n, s, v, f, 0))


def test_default_split_is_deterministic_patient_wise_and_holds_v_beats() -> None:
    summaries = [_summary(f"{100 + i}") for i in range(10)] + [
        _summary("201", v=40),
        _summary("202", v=5, s=9),
    ]
    summaries.append(_summary("203", s=30))
    train, val = choose_validation(summaries, seed=0)
    assert set(train).isdisjoint(val) and sorted(train + val) == sorted(s.name for s in summaries)
    assert len(val) == 3  # round(20 % of 13)
    assert {"201", "202"} & set(val) and {"201", "202"} & set(train)  # V on both sides
    assert {"202", "203"} & set(val) and {"202", "203"} & set(train)  # and S
    assert choose_validation(list(reversed(summaries)), seed=0) == (
        train,
        val,
    )  # order of the folder: no matter
    others = {tuple(choose_validation(summaries, seed=k)[1]) for k in range(6)}
    assert len(others) > 1  # the seed chooses


def test_default_split_keeps_the_only_v_record_for_training() -> None:
    summaries = [_summary(f"{100 + i}") for i in range(4)] + [_summary("200", v=50)]
    for seed in range(5):
        train, val = choose_validation(summaries, seed=seed)
        assert "200" in train and len(val) == 1
    train, val = choose_validation([_summary("a"), _summary("b", v=3)], seed=0)
    assert (train, val) == (["b"], ["a"])
    # a V record that holds most of the F beats (MIT-BIH 208) stays in training; another V record validates
    summaries = [_summary(f"{100 + i}") for i in range(8)]
    summaries += [_summary("208", v=900, f=370), _summary("119", v=400), _summary("205", v=70, f=11)]
    summaries += [_summary("108", v=5), _summary("109", v=3)]  # a handful of V beats would not judge V
    for seed in range(8):
        train, val = choose_validation(summaries, seed=seed)
        assert "208" in train and {"119", "205"} & set(val), (seed, val)


def test_record_names() -> None:
    assert parse_record_names("ds1", "--records") == list(DS1) and len(DS1) == 22
    assert parse_record_names(" 101, 106 ,", "--records") == ["101", "106"]
    assert parse_record_names(None, "--records") is None
    with pytest.raises(KasminaError, match="named twice"):
        parse_record_names("ds1,101", "--records")
    with pytest.raises(KasminaError, match="at least one"):
        parse_record_names(",", "--val-records")


def test_lead_by_name_or_index(synth_dir: Path) -> None:
    spec = parse_data_spec(f"wfdb:{synth_dir}")
    second = read_wfdb(synth_dir / _names(synth_dir)[0]).lead_names[1]
    by_index = plan_split(spec, lead="1")
    by_name = plan_split(spec, lead=second)
    assert {s.lead for s in by_index.summaries.values()} == {second}
    assert (by_name.train, by_name.val) == (by_index.train, by_index.val)
