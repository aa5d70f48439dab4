"""Named scenarios: each builds, labels its conditions, and is reproducible."""

from __future__ import annotations

import numpy as np
import pytest

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.ecg.scenarios import SCENARIOS, make_scenario
from kasmina_edge.ecg.types import AAMI_INDEX


def test_required_scenarios_exist() -> None:
    assert {"clean", "noisy-walk", "emg-switch", "lead-change", "new-patient", "arrhythmia-mix"} <= set(SCENARIOS)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_scenario_builds_labelled_and_reproducible(name: str) -> None:
    a = make_scenario(name, 1.0, seed=2)
    b = make_scenario(name, 1.0, seed=2)
    assert a.n_samples == 60 * 360 and a.signal.shape[1] == 2
    assert np.array_equal(a.signal, b.signal)
    assert a.beats is not None and len(a.beats) > 40
    assert np.all(np.isfinite(a.signal))


def test_noisy_walk_schedule() -> None:
    rec = make_scenario("noisy-walk", 5.0, seed=0, emg_db=3.0)
    labels = [(c.label, c.start, c.end, c.level_db) for c in rec.conditions]
    fifth = rec.n_samples // 5
    assert labels == [("emg", fifth, 2 * fifth, 3.0), ("baseline_wander", 2 * fifth, 3 * fifth, 0.0),
                      ("electrode_motion", 3 * fifth, 4 * fifth, 6.0)]
    assert not rec.artifact_mask[:fifth].any() and not rec.artifact_mask[4 * fifth:].any()


def test_emg_switch_second_half_at_the_given_snr() -> None:
    rec = make_scenario("emg-switch", 2.0, seed=0, snr_db=-6.0)
    (c,) = rec.conditions
    assert (c.label, c.start, c.end, c.level_db) == ("emg", rec.n_samples // 2, rec.n_samples, -6.0)
    half = rec.n_samples // 2
    noise_first = np.std(np.diff(rec.signal[:half, 0]))
    noise_second = np.std(np.diff(rec.signal[half:, 0]))
    assert noise_second > 2 * noise_first


def test_lead_change_swaps_the_leads() -> None:
    rec = make_scenario("lead-change", 2.0, seed=1)
    (c,) = rec.conditions
    assert c.label == "lead_change" and c.start == rec.n_samples // 2
    r = rec.beats.samples
    first, second = r[(r > 360) & (r < c.start - 360)], r[r > c.start + 360]
    assert np.median(rec.signal[first, 0]) > 0.4  # MLII-like: tall R
    assert np.median(rec.signal[second, 0]) < np.median(rec.signal[first, 0]) / 2  # now V1-like on channel 0
    assert np.median(rec.signal[second, 1]) > 0.4


def test_new_patient_changes_rate_or_morphology() -> None:
    rec = make_scenario("new-patient", 4.0, seed=5)
    (c,) = rec.conditions
    assert c.label == "new_patient"
    r = rec.beats.samples
    a, b = r[r < c.start], r[r > c.start]
    rate_a, rate_b = 60 / np.mean(np.diff(a) / 360), 60 / np.mean(np.diff(b) / 360)
    amp_a, amp_b = np.median(rec.signal[a[1:-1], 0]), np.median(rec.signal[b[1:-1], 0])
    assert abs(rate_a - rate_b) > 2 or abs(amp_a - amp_b) > 0.1
    assert np.min(np.diff(r)) > 0.25 * 360  # no impossible beat pair at the switch


def test_arrhythmia_mix_has_many_kinds_and_classes() -> None:
    rec = make_scenario("arrhythmia-mix", 3.0, seed=0)
    kinds = {a.label for a in rec.anomalies}
    assert len(kinds) >= 11
    counts = rec.beats.counts()
    for cls in ("N", "S", "V"):
        assert counts[cls] > 0, cls
    assert {"AFIB", "VT", "SVTA"} <= {r.label for r in rec.rhythms}
    assert np.any(rec.beats.classes == AAMI_INDEX["Q"])


def test_errors() -> None:
    with pytest.raises(KasminaError, match="unknown scenario 'walk'.*noisy-walk"):
        make_scenario("walk", 1)
    with pytest.raises(KasminaError, match="takes no level loud_db.*snr_db"):
        make_scenario("emg-switch", 1, loud_db=3)
    with pytest.raises(KasminaError, match="minutes"):
        make_scenario("clean", 0)
