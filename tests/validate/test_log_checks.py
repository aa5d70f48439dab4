"""The log scanners and the sealed-log envelope, one property each."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kasmina_edge.validate.log_crypto import SealError, load_or_create_key, open_log, seal_file
from kasmina_edge.validate.log_scan import plain_patient_data, raw_ecg


def test_a_sealed_log_opens_only_with_its_key_and_hides_its_content(tmp_path: Path) -> None:
    log = tmp_path / "run.jsonl"
    body = b'{"event":"beat","sample":1,"class":"N"}\n'
    log.write_bytes(body)
    key = load_or_create_key(tmp_path / "k" / "logs.key")
    assert (tmp_path / "k" / "logs.key").stat().st_mode & 0o077 == 0
    sealed = seal_file(log, key)
    assert not log.exists() and b"beat" not in sealed.read_bytes()
    assert open_log(sealed, key) == body
    with pytest.raises(SealError, match="does not open with this key"):
        open_log(sealed, bytes(32))
    assert plain_patient_data(sealed) is None and raw_ecg(sealed) == []


def test_numbers_in_a_plain_text_log_are_raw_ecg(tmp_path: Path) -> None:
    csv = tmp_path / "strip.csv"
    csv.write_text("t,mv\n" + ",".join(f"{0.01 * i:.2f}" for i in range(100)) + "\n")
    found = raw_ecg(csv)
    assert len(found) == 1 and found[0].line == 2 and "run of 64+ numbers" in found[0].what
    short = tmp_path / "short.log"
    short.write_text("beats 1,2,3 at 72 bpm\n")
    assert raw_ecg(short) == []


def test_a_long_array_under_another_key_is_not_a_signal(tmp_path: Path) -> None:
    log = tmp_path / "counts.jsonl"
    log.write_text(json.dumps({"device": "p1", "histogram": list(range(200))}) + "\n")
    assert raw_ecg(log) == []
    log.write_text(json.dumps({"device": "p1", "nested": {"ecg": [0.1] * 64}}) + "\n")
    assert [f.what for f in raw_ecg(log)] == ["nested.ecg: 64 samples in plain text"]


def test_beats_and_telemetry_records_are_patient_data(tmp_path: Path) -> None:
    beats = tmp_path / "run.jsonl"
    beats.write_text(json.dumps({"event": "run"}) + "\n" + json.dumps({"event": "beat", "sample": 5, "class": "V"}) + "\n")
    found = plain_patient_data(beats)
    assert found is not None and found.line == 2 and "beat classes" in found.what
    store = tmp_path / "monitor.jsonl"
    store.write_text(json.dumps({"device": "p1", "kind": "anomaly", "record": {}}) + "\n")
    assert "telemetry (anomaly)" in str(plain_patient_data(store))
    status = tmp_path / "device.json"
    status.write_text(json.dumps({"name": "p1", "active": "a"}))
    assert plain_patient_data(status) is None
