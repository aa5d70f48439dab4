"""Messages that say what is true (issue 17, item 5): a signal-quality warning when no plausible ECG is
present; evaluate warns when a run log covers part of the record or was made on another record."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest


def test_a_sine_wave_is_not_called_an_ecg(kasmina, home: Path) -> None:  # type: ignore[no-untyped-def]
    t = np.arange(0, 60, 1 / 360)
    np.savetxt("sine.csv", np.sin(2 * np.pi * 1.425 * t))
    got = kasmina("ecg", "stats", "csv:sine.csv?fs=360")
    assert got.code == 0, got.err
    assert "not a plausible ECG" in got.out
    assert len(got.err_lines) == 1 and got.err_lines[0].startswith("warning:") and "does not look like an ECG" in got.err


@pytest.mark.parametrize("spec", ["synthetic:clean?minutes=1", "synthetic:emg-switch?minutes=1"])
def test_an_ecg_is_plausible(spec: str, kasmina, home: Path) -> None:  # type: ignore[no-untyped-def]
    got = kasmina("ecg", "stats", spec, "--json")
    assert got.code == 0, got.err
    quality = json.loads(got.out)["signal_quality"]
    assert quality["plausible_ecg"], quality
    assert "warning" not in got.err


def _run_log(path: Path, samples: np.ndarray, source: dict[str, object] | None, run_source: str = "clean") -> None:
    with path.open("w", encoding="utf-8") as f:
        f.write(json.dumps({"event": "run", "source": run_source}) + "\n")
        for s in samples:
            f.write(json.dumps({"event": "beat", "sample": int(s), "class": "N"}) + "\n")
        if source is not None:
            f.write(json.dumps({"event": "source", **source}) + "\n")


def _reference(spec: str):  # type: ignore[no-untyped-def]
    from kasmina_edge.ecg.sources import open_source

    rec = open_source(spec).record()
    assert rec is not None and rec.beats is not None
    return rec


def test_evaluate_warns_about_a_truncated_run(kasmina, home: Path) -> None:  # type: ignore[no-untyped-def]
    spec = "synthetic:clean?minutes=2"
    rec = _reference(spec)
    s = rec.beats.samples
    _run_log(Path("cut.jsonl"), s[s < 30 * rec.fs], {"spec": spec, "from_s": 0.0, "seconds": None})
    got = kasmina("evaluate", spec, "--predictions", "cut.jsonl")
    assert got.code == 0, got.err
    assert "warning: cut.jsonl covers 2" in got.err and "a run cut short?" in got.err, got.err
    _run_log(Path("whole.jsonl"), s, {"spec": spec, "from_s": 0.0, "seconds": None})
    got = kasmina("evaluate", spec, "--predictions", "whole.jsonl")
    assert got.code == 0 and "warning" not in got.err, got.err


def test_evaluate_warns_about_a_run_on_another_record(kasmina, home: Path) -> None:  # type: ignore[no-untyped-def]
    spec = "synthetic:clean?minutes=1"
    rec = _reference(spec)
    _run_log(Path("other.jsonl"), rec.beats.samples, {"spec": "synthetic:noisy-walk", "from_s": 0.0, "seconds": None})
    got = kasmina("evaluate", spec, "--predictions", "other.jsonl")
    assert got.code == 0, got.err
    assert "is a run on synthetic:noisy-walk, not on synthetic:clean" in got.err, got.err


def test_evaluate_takes_the_start_from_the_run_log(kasmina, home: Path) -> None:  # type: ignore[no-untyped-def]
    spec = "synthetic:clean?minutes=2"
    rec = _reference(spec)
    start = 40.0
    s = rec.beats.samples
    kept = s[s >= start * rec.fs] - int(start * rec.fs)
    _run_log(Path("from.jsonl"), kept, {"spec": spec, "from_s": start, "seconds": None})
    got = kasmina("evaluate", spec, "--predictions", "from.jsonl", "--json")  # the figures on stdout
    assert got.code == 0, got.err
    body = json.loads(got.out)["gross"]
    assert body["offset_samples"] == int(start * rec.fs)
    got = kasmina("evaluate", spec, "--predictions", "from.jsonl", "--from", "10")
    assert "the run log says the stream began at 40 s, not --from 10" in got.err
