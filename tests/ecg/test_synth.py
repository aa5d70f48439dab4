"""The ECGSYN-style generator: reproducible, labelled, two distinct leads, any rate."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.ecg.synth import PatientParams, random_patient, synthesize
from kasmina_edge.ecg.types import AAMI_INDEX


def test_same_seed_same_record_and_different_seed_differs() -> None:
    p = random_patient(np.random.default_rng(3))
    a = synthesize(p, 20, rng=np.random.default_rng(5))
    b = synthesize(p, 20, rng=np.random.default_rng(5))
    c = synthesize(p, 20, rng=np.random.default_rng(6))
    assert np.array_equal(a.signal, b.signal)
    assert np.array_equal(a.beats.samples, b.beats.samples)
    assert not np.array_equal(a.signal, c.signal)


def test_every_beat_labelled_at_its_r_peak() -> None:
    rec = synthesize(PatientParams(hr_mean=72), 30, rng=np.random.default_rng(0))
    assert rec.signal.shape == (30 * 360, 2) and rec.signal.dtype == np.float32
    beats = rec.beats
    assert beats is not None and len(beats) == len(beats.symbols)
    assert np.all(np.diff(beats.samples) > 0)
    assert np.all(beats.classes == AAMI_INDEX["N"])
    x = rec.lead(0)
    for r in beats.samples[1:-1]:
        # the label sits on the local maximum of the MLII-like lead (within one sample)
        local = x[r - 10: r + 11]
        assert abs(int(np.argmax(local)) - 10) <= 1
    assert rec.rhythms and rec.rhythms[0].label == "N" and rec.rhythms[-1].end == rec.n_samples


def test_heart_rate_and_hrv_follow_the_patient() -> None:
    for hr in (50.0, 75.0, 110.0):
        rec = synthesize(PatientParams(hr_mean=hr, hr_std=3.0), 120, rng=np.random.default_rng(1))
        rr = np.diff(rec.beats.samples) / rec.fs
        assert abs(60.0 / rr.mean() - hr) < 0.06 * hr
        assert rr.std() > 0.003  # heart rate variability exists
        assert rr.std() / rr.mean() < 0.1  # ... but sinus rhythm stays regular


def test_two_leads_have_different_morphology() -> None:
    rec = synthesize(PatientParams(), 20, rng=np.random.default_rng(0))
    r = rec.beats.samples[2:-2]
    assert np.all(rec.signal[r, 0] > 0.5)  # tall R in the MLII-like lead
    v1_min = np.array([rec.signal[x - 20: x + 30, 1].min() for x in r])
    assert np.all(v1_min < -0.5)  # deep S in the V1-like lead
    assert abs(np.corrcoef(rec.signal[:, 0], rec.signal[:, 1])[0, 1]) < 0.5


def test_patients_vary() -> None:
    patients = [random_patient(np.random.default_rng(s)) for s in range(20)]
    rates = [p.hr_mean for p in patients]
    r_amp = [p.amplitudes[0, 2] for p in patients]
    assert np.std(rates) > 5 and np.std(r_amp) > 0.2
    for p in patients:
        p.validate()


@pytest.mark.parametrize("fs", [128.0, 250.0, 500.0, 1000.0])
def test_any_sample_rate(fs: float) -> None:
    ref = synthesize(PatientParams(), 20, fs=360.0, rng=np.random.default_rng(2))
    rec = synthesize(PatientParams(), 20, fs=fs, rng=np.random.default_rng(2))
    assert rec.n_samples == int(20 * fs)
    # same beats at the same times, labels on the new grid
    assert np.allclose(rec.beats.samples / fs, ref.beats.samples / 360.0, atol=1.0 / min(fs, 360.0))
    # the R amplitude does not depend on the rate
    assert abs(rec.signal[rec.beats.samples, 0].mean() - ref.signal[ref.beats.samples, 0].mean()) < 0.05


def test_closed_form_matches_mcsharry_ode() -> None:
    """Integrating McSharry's ODE (without the relaxation term) at constant rate gives our beat."""
    p = PatientParams(hr_mean=60.0, hr_std=0.0, resp_baseline_mv=0.0)
    fs = 360.0
    rec = synthesize(p, 6, fs=fs, rng=np.random.default_rng(0))
    r0 = int(rec.beats.samples[2])
    rr = float(np.diff(rec.beats.samples).mean()) / fs
    omega = 2 * np.pi / rr
    rate = 1.0 / rr
    angles = p.angles * rate ** np.array([0.25, 1.0, 0.0, 1.0, 0.25, 1.0, 0.5])
    widths = p.widths * rate ** np.array([0.5, 1.0, 1.0, 1.0, 0.5, 1.0, 0.5])
    # McSharry's a_i from our peak amplitudes: A_i = a_i b_i^2 / omega
    a = p.amplitudes[0] * omega / widths**2

    def rhs(t: float, y: np.ndarray) -> np.ndarray:
        x1, x2, z = y
        alpha = 1.0 - np.hypot(x1, x2)
        theta = np.arctan2(x2, x1)
        dtheta = np.mod(theta - angles + np.pi, 2 * np.pi) - np.pi
        dz = -np.sum(a * dtheta * np.exp(-(dtheta**2) / (2 * widths**2)))
        return np.array([alpha * x1 - omega * x2, alpha * x2 + omega * x1, dz])

    # start half a cycle before the R peak (theta = -pi), z at the diastolic baseline
    t = np.arange(int(rr * fs)) / fs
    sol = solve_ivp(rhs, (0, t[-1]), [-1.0, 0.0, 0.0], t_eval=t, max_step=1.0 / fs, rtol=1e-8, atol=1e-10)
    ode = sol.y[2]
    seg = rec.signal[:, 0].astype(np.float64)
    idx = np.arange(len(t)) + r0 - len(t) // 2
    # Our R peak lies between samples (its label is rounded): align to the best sub-sample shift.
    errors = []
    for shift in np.linspace(-0.6, 0.6, 25):
        ours = np.interp(idx + shift, np.arange(seg.shape[0]), seg)
        errors.append(np.max(np.abs((ode - ode[0]) - (ours - ours[0]))))
    assert min(errors) < 0.02 * np.ptp(seg[idx])


def test_bad_arguments() -> None:
    with pytest.raises(KasminaError):
        synthesize(PatientParams(), 0)
    with pytest.raises(KasminaError):
        synthesize(PatientParams(), 10, fs=10.0)
    with pytest.raises(KasminaError):
        synthesize(PatientParams(hr_mean=400), 10)
