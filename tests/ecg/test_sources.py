"""Sources: spec parsing, chunks, CSV and WFDB input, pacing, one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.ecg.scenarios import make_scenario
from kasmina_edge.ecg.sources import EcgSource, open_source, paced, read_csv

from .conftest import MITDB, needs_mitdb


def test_synthetic_spec_with_options_and_chunks() -> None:
    src = open_source("synthetic:emg-switch?minutes=0.5&seed=3&snr_db=-3")
    assert isinstance(src, EcgSource)
    assert (src.fs, src.n_leads, src.name) == (360.0, 2, "synthetic:emg-switch")
    rec = src.record()
    assert rec is not None and rec.n_samples == 10800 and rec.conditions[0].level_db == -3.0
    expected = make_scenario("emg-switch", 0.5, seed=3, snr_db=-3)
    chunks = list(src.chunks(256))
    assert all(c.shape == (256, 2) and c.dtype == np.float32 for c in chunks[:-1])
    assert chunks[-1].shape == (10800 % 256, 2)
    assert np.array_equal(np.concatenate(chunks), expected.signal)


def test_crop_keeps_labels_consistent() -> None:
    full = open_source("synthetic:clean?minutes=1").record()
    part = open_source("synthetic:clean?minutes=1", start_s=10, seconds=5).record()
    assert part.n_samples == 1800
    np.testing.assert_array_equal(part.signal, full.signal[3600:5400])
    s = full.beats.samples
    np.testing.assert_array_equal(part.beats.samples, s[(s >= 3600) & (s < 5400)] - 3600)


def test_csv_with_and_without_header_and_resampling(tmp_path: Path) -> None:
    rec = make_scenario("clean", 0.2, fs=250.0, seed=0)
    with_header = tmp_path / "h.csv"
    with_header.write_text("MLII,V1\n" + "\n".join(f"{a:.6f},{b:.6f}" for a, b in rec.signal))
    no_header = tmp_path / "n.csv"
    no_header.write_text("\n".join(f"{a:.6f}" for a in rec.signal[:, 0]))
    src = open_source(f"csv:{with_header}?fs=250")
    assert src.n_leads == 2 and src.fs == 360.0 and src.record().lead_names == ["MLII", "V1"]
    assert src.record().n_samples == round(rec.n_samples * 360 / 250)
    same = open_source(f"csv:{with_header}?fs=250", fs=250.0).record()
    np.testing.assert_allclose(same.signal, rec.signal, atol=1e-6)
    one = open_source(str(no_header), fs=250.0)  # bare .csv path
    assert one.n_leads == 1 and one.record().lead_names == ["lead0"]


def test_csv_errors_name_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n0.1,0.2\n0.3,nan\n")
    with pytest.raises(KasminaError, match=r"bad.csv: NaN/inf sample at line 3, column 2"):
        read_csv(bad, 360.0)
    bad.write_text("0.1,0.2\n0.3\n")
    with pytest.raises(KasminaError, match="line 2 has 1 columns"):
        read_csv(bad, 360.0)
    bad.write_text("0.1\nfoo\n")
    with pytest.raises(KasminaError, match="line 2: not a number"):
        read_csv(bad, 360.0)
    bad.write_text("")
    with pytest.raises(KasminaError, match="empty"):
        read_csv(bad, 360.0)
    bad.write_text("0.1\n0.2\n")
    with pytest.raises(KasminaError, match="bad.csv: sample rate 5.0 Hz is not supported"):
        open_source(f"csv:{bad}?fs=5")
    with pytest.raises(KasminaError, match="not found"):
        read_csv(tmp_path / "missing.csv", 360.0)


@needs_mitdb
def test_wfdb_source() -> None:
    src = open_source(f"wfdb:{MITDB / '100'}?leads=MLII", start_s=60, seconds=10)
    assert src.n_leads == 1 and src.record().n_samples == 3600 and len(src.record().beats) > 5
    assert open_source(str(MITDB / "100"), seconds=1).n_leads == 2  # bare WFDB path


def test_bad_specs() -> None:
    with pytest.raises(KasminaError, match="unknown source scheme 'ftp'"):
        open_source("ftp:thing")
    with pytest.raises(KasminaError, match="cannot tell what source"):
        open_source("no-such-thing")
    with pytest.raises(KasminaError, match="unknown scenario"):
        open_source("synthetic:nope")
    with pytest.raises(KasminaError, match="not a number"):
        open_source("synthetic:clean?minutes=many")
    with pytest.raises(KasminaError, match="model rate"):
        open_source("synthetic:clean", fs=float("nan"))
    with pytest.raises(KasminaError, match="chunk size"):
        next(open_source("synthetic:clean?minutes=0.1").chunks(0))


def test_paced_realtime_and_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a fake clock: realtime yields each chunk once its last sample would have been recorded (36 samples
    at 360 Hz: every 0.1 s); fast never sleeps."""
    from kasmina_edge.ecg import sources

    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    monkeypatch.setattr(sources.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(sources.time, "sleep", sleep)
    chunks = [np.zeros((36, 1), np.float32)] * 5  # 0.5 s at 360 Hz
    yielded_at = [now[0] for _ in paced(chunks, 360.0, realtime=True)]
    assert yielded_at == pytest.approx([100.1, 100.2, 100.3, 100.4, 100.5])
    assert slept == pytest.approx([0.1] * 5)
    slept.clear()
    assert len(list(paced(chunks, 360.0, realtime=False))) == 5
    assert slept == []


def test_unknown_options_are_named(tmp_path: Path) -> None:
    f = tmp_path / "a.csv"
    f.write_text("0.1\n0.2\n")
    with pytest.raises(KasminaError, match="unknown option.*rate.*options: fs"):
        open_source(f"csv:{f}?rate=250")
    with pytest.raises(KasminaError, match="takes no level"):
        open_source("synthetic:clean?loud=3")
