"""Artifacts: SNR as NSTDB defines it, mask bits, condition spans, real NSTDB noise when present."""

from __future__ import annotations

import numpy as np
import pytest

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.ecg.artifacts import ARTIFACT_KINDS, add_noise, qrs_signal_power, real_noise
from kasmina_edge.ecg.synth import PatientParams, synthesize
from kasmina_edge.ecg.types import ARTIFACT_BITS

from .conftest import needs_nstdb


@pytest.fixture(scope="module")
def clean():  # type: ignore[no-untyped-def]
    return synthesize(PatientParams(), 60, rng=np.random.default_rng(0))


@pytest.mark.parametrize("kind", ["emg", "baseline_wander", "electrode_motion", "powerline"])
@pytest.mark.parametrize("snr", [12.0, 0.0, -6.0])
def test_additive_noise_hits_the_snr_and_marks_its_span(clean, kind: str, snr: float) -> None:  # type: ignore[no-untyped-def]
    a, b = 3600, 14400
    out = add_noise(clean, kind, snr, np.random.default_rng(1), start=a, end=b, real=False)
    for lead in range(2):
        noise = out.signal[:, lead].astype(np.float64) - clean.signal[:, lead]
        assert np.all(noise[:a] == 0) and np.all(noise[b:] == 0)
        measured = 10 * np.log10(qrs_signal_power(clean, lead) / np.var(noise[a:b]))
        assert measured == pytest.approx(snr, abs=0.05)
    bit = ARTIFACT_BITS[kind]
    assert np.all(out.artifact_mask[a:b] & bit) and not np.any(out.artifact_mask[:a] & bit)
    assert out.conditions[-1].label == kind and out.conditions[-1].level_db == snr
    assert (out.conditions[-1].start, out.conditions[-1].end) == (a, b)
    assert out.conditions[-1].source == "synthetic"
    assert clean.conditions == [] and not clean.artifact_mask.any()  # the input is untouched


def test_qrs_signal_power_is_nstdb_s(clean) -> None:  # type: ignore[no-untyped-def]
    r = clean.beats.samples
    r = r[(r >= 18) & (r < clean.n_samples - 18)]
    x = clean.signal[:, 0].astype(np.float64)
    pp = np.median([x[i - 18: i + 19].max() - x[i - 18: i + 19].min() for i in r])
    assert qrs_signal_power(clean, 0) == pytest.approx(pp**2 / 8, rel=1e-6)


def test_noise_spectra_are_where_they_belong(clean) -> None:  # type: ignore[no-untyped-def]
    from scipy.signal import welch

    def share(kind: str, lo: float, hi: float) -> float:
        out = add_noise(clean, kind, 0.0, np.random.default_rng(2), real=False)
        f, p = welch(out.signal[:, 0] - clean.signal[:, 0], fs=360, nperseg=4096)
        return float(p[(f >= lo) & (f <= hi)].sum() / p.sum())

    assert share("baseline_wander", 0, 1.0) > 0.9
    assert share("emg", 15, 180) > 0.9
    assert share("powerline", 48, 52) > 0.9
    assert share("electrode_motion", 0, 15) > 0.9


def test_lead_off_and_saturation(clean) -> None:  # type: ignore[no-untyped-def]
    off = add_noise(clean, "lead_off", 30.0, np.random.default_rng(3), start=7200, end=10800, leads=[0])
    assert np.std(off.signal[7200:10800, 0]) < 0.05 and np.std(off.signal[7200:10800, 1]) > 0.1
    assert np.all(off.artifact_mask[7200:10800] & ARTIFACT_BITS["lead_off"])
    assert len(off.beats) == len(clean.beats)  # the heart kept beating
    sat = add_noise(clean, "saturation", 0.0, np.random.default_rng(3), start=7200, end=18000)
    flagged = (sat.artifact_mask & ARTIFACT_BITS["saturation"]) != 0
    assert flagged.sum() > 10 and not flagged[:7200].any()
    x = sat.signal[7200:18000, 0]
    rail = np.abs(x).max()
    assert np.all(np.isclose(np.abs(sat.signal[flagged, 0]), rail) | np.isclose(np.abs(sat.signal[flagged, 1]),
                                                                              np.abs(sat.signal[7200:18000, 1]).max()))


def test_errors(clean) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    with pytest.raises(KasminaError, match="unknown artifact 'dust'"):
        add_noise(clean, "dust", 0.0, rng)
    with pytest.raises(KasminaError, match="outside the record"):
        add_noise(clean, "emg", 0.0, rng, start=10, end=10**9)
    with pytest.raises(KasminaError, match="lead 5"):
        add_noise(clean, "emg", 0.0, rng, leads=[5])
    with pytest.raises(KasminaError, match="finite"):
        add_noise(clean, "emg", float("nan"), rng)
    assert set(ARTIFACT_KINDS) == set(ARTIFACT_BITS)


@needs_nstdb
def test_real_nstdb_noise_is_used_when_present(clean) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("wfdb")
    x = real_noise("ma", 5000, 360.0, np.random.default_rng(0))
    assert x is not None and x.shape == (5000,) and abs(x.mean()) < 1e-9
    assert real_noise("bw", 100, 250.0, np.random.default_rng(0)).shape == (100,)
    out = add_noise(clean, "emg", 6.0, np.random.default_rng(0))
    assert out.conditions[-1].source == "nstdb:ma"
    noise = out.signal[:, 0].astype(np.float64) - clean.signal[:, 0]
    assert 10 * np.log10(qrs_signal_power(clean, 0) / np.var(noise)) == pytest.approx(6.0, abs=0.05)
    with pytest.raises(KasminaError):
        real_noise("em", 10, 360.0, np.random.default_rng(0))


def test_real_noise_absent_gives_none(monkeypatch: pytest.MonkeyPatch, tmp_path, clean) -> None:  # type: ignore[no-untyped-def]
    from kasmina_edge.ecg import artifacts

    monkeypatch.setenv("KASMINA_DATA", str(tmp_path))
    artifacts._nstdb.cache_clear()
    try:
        assert real_noise("ma", 100, 360.0, np.random.default_rng(0)) is None
        out = add_noise(clean, "emg", 6.0, np.random.default_rng(0))
        assert out.conditions[-1].source == "synthetic"
    finally:
        artifacts._nstdb.cache_clear()
