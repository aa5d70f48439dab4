"""Curriculum stages 0-1 (toy 2-D sets): data, purity, the drift early warning, and a quick stage run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("torch")

from kasmina_edge.curriculum import toy_data as td  # noqa: E402
from kasmina_edge.curriculum.drift_warning import calibrate, evaluate_warning, ks_statistic  # noqa: E402
from kasmina_edge.curriculum.grow import ShiftTask  # noqa: E402
from kasmina_edge.curriculum.stage import StageContext  # noqa: E402
from kasmina_edge.curriculum.toy import accuracy_of, gaussian_clusters_stage, spirals_moons_stage  # noqa: E402

SMALL = td.ToySizes(train=200, val=120, adapt=80, shift_val=60, shift_test=60, clean_test=60, replay=0.5)


def _task(seed: int) -> ShiftTask:
    shift = td.ToyShift("drift", angle=0.5, offset=(1.0, 0.5))
    return td.toy_task(td.gaussian_clusters, 4, shift, td.Lift.make(), SMALL, seed)


def test_task_is_deterministic_and_seeded() -> None:
    a, b, c = _task(3), _task(3), _task(4)
    for split in ("train", "val", "adapt", "shift_val", "shift_test", "clean_test"):
        np.testing.assert_array_equal(getattr(a, split).windows, getattr(b, split).windows)
        np.testing.assert_array_equal(getattr(a, split).labels, getattr(b, split).labels)
    assert not np.array_equal(a.train.windows, c.train.windows)
    # shapes as the classifier reads them: (n, 1, W), no auxiliary features
    assert a.train.windows.shape == (200, 1, td.WINDOW) and a.n_aux == 0
    # adapt = shifted samples plus clean replay, each with its clean twin
    assert len(a.adapt) == 80 + 40 and a.adapt_clean is not None and len(a.adapt_clean) == len(a.adapt)
    np.testing.assert_array_equal(a.adapt.windows[80:], a.adapt_clean.windows[80:])  # replay: its own twin
    assert not np.allclose(a.adapt.windows[:80], a.adapt_clean.windows[:80])  # shifted: not


def test_samplers_are_deterministic_and_balanced() -> None:
    for sample in (td.gaussian_clusters, td.two_moons, td.two_spirals, td.moons_and_spirals):
        p, q = sample(400, 7), sample(400, 7)
        np.testing.assert_array_equal(p.xy, q.xy)
        counts = np.bincount(p.labels)
        assert counts.min() >= 0.8 * counts.max(), (sample, counts)


def test_shifts_at_zero_severity_are_the_identity_and_grow_with_it() -> None:
    pts, lift = td.gaussian_clusters(100, 0), td.Lift.make()
    drift = td.ToyShift("drift", angle=0.6, offset=(2.0, 0.0))
    noise = td.ToyShift("noise", sigma=0.4)
    for shift in (drift, noise):
        np.testing.assert_allclose(shift.apply(pts, lift, 0.0, seed=1), lift(pts.xy), atol=1e-6)
        half = np.abs(shift.apply(pts, lift, 0.5, seed=1) - lift(pts.xy)).mean()
        full = np.abs(shift.apply(pts, lift, 1.0, seed=1) - lift(pts.xy)).mean()
        assert 0 < half < full
    # per-point severity: the first half untouched
    sev = np.r_[np.zeros(50), np.ones(50)]
    moved = td.drift_points(pts.xy, sev, 0.6, (2.0, 0.0))
    np.testing.assert_allclose(moved[:50], pts.xy[:50])
    assert np.all(np.abs(moved[50:] - pts.xy[50:]).sum(axis=1) > 0.1)


def test_purity_on_a_constructed_case() -> None:
    labels = np.array([0, 0, 1, 1, 1, 2])
    # groups {0: 0,0,1}, {1: 1,1}, {2: 2} -> majorities 2 + 2 + 1 of 6
    assert td.purity(np.array([0, 0, 0, 1, 1, 2]), labels) == pytest.approx(5 / 6)
    # renaming the groups changes accuracy, not purity
    renamed = np.array([2, 2, 0, 0, 0, 1])
    assert td.purity(renamed, labels) == 1.0 and accuracy_of(renamed, labels) == 0.0
    # one group for everything: the majority label's share
    assert td.purity(np.zeros(6, dtype=np.int64), labels) == pytest.approx(3 / 6)


def test_ks_statistic_sees_spread_and_location() -> None:
    rng = np.random.default_rng(0)
    ref, same = rng.normal(size=(400, 3)), rng.normal(size=(200, 3))
    assert ks_statistic(ref, same) < 0.15
    assert ks_statistic(ref, same + 1.0) > 0.3  # a moved mean
    assert ks_statistic(ref, same * 3.0) > 0.2  # a wider spread, same mean (sensor noise)


def test_drift_warning_fires_on_a_shift_and_stays_quiet_on_clean() -> None:
    from kasmina_edge.host.model import ModelConfig, build_model

    model = build_model(ModelConfig(name="t", channels=(4, 4, 4, 4), kernels=(3, 3, 3, 3), convs_per_block=1,
                                    chunks=(1, 1, 1, 1), window=td.WINDOW, n_rr=0, n_classes=4))  # fmt: skip
    lift, shift = td.Lift.make(), td.ToyShift("drift", angle=0.8, offset=(2.5, 1.0))
    det = calibrate(model, lift(td.gaussian_clusters(600, 1).xy), lift(td.gaussian_clusters(300, 5).xy), window=100,
                    draws=40)  # fmt: skip
    steps, step = 20, 25
    clean = td.gaussian_clusters(steps * step, 2)
    ramp = td.gaussian_clusters(steps * step, 3)
    sev = np.repeat(np.linspace(0.0, 1.0, steps), step)
    # target 0: the windowed metric never falls below it, so only the warning itself is judged here
    res = evaluate_warning(model, det, (lift(clean.xy), clean.labels), (shift.apply(ramp, lift, sev, 4), ramp.labels, sev),
                           step=step, target=0.0, metric=accuracy_of)  # fmt: skip
    assert res.false_alarms == 0
    assert res.fire_step is not None and res.fire_severity is not None and res.fire_severity < 0.9
    assert res.drop_step is None and res.warned_ahead
    full = 100 // step - 1  # the first step whose trailing window is full
    assert len(res.statistic) == steps and max(res.statistic[full : full + 2]) < 1.0 < res.statistic[-1]


def test_factories_match_the_registry() -> None:
    from kasmina_edge.curriculum.registry import load_stage

    for index, factory in ((0, gaussian_clusters_stage), (1, spirals_moons_stage)):
        stage = load_stage(index)
        assert stage.index == index and stage.name == factory().name and stage.domain


@pytest.mark.slow
@pytest.mark.parametrize("factory", [gaussian_clusters_stage, spirals_moons_stage])
def test_quick_stage_returns_a_complete_report(factory: object, tmp_path: Path) -> None:
    stage = factory()  # type: ignore[operator]
    report = stage.run(StageContext(workdir=tmp_path, quick=True))
    assert report.index == stage.index and report.metric in ("cluster purity", "accuracy")
    for arm in (report.base, report.seeded, report.fine_tuned):
        assert arm is not None and 0.0 <= arm.metric <= 1.0
        assert {"shift_test", "clean_test", "shift_val"} <= set(arm.detail)
    assert report.base.params > report.fine_tuned.params > 0  # fine-tuning trains the host's weights only
    assert report.seeded.params == sum(t["param_count"] for t in report.seeded.detail["trials"]
                                       if t["final_stage"] == "FOSSILIZED")  # fmt: skip
    events = [e.get("event") for e in report.lifecycle]
    assert events and "train_epoch" in events
    assert {"drift_warning_before_drop", "drift_warning_no_false_alarm", "base_short_on_validation"} <= set(report.checks)
    warning = report.base.detail["drift_warning"]
    assert warning["steps"] > 0 and len(warning["metric"]) == warning["steps"]
    d = json.loads(json.dumps(report.to_dict()))
    assert d["passed"] == report.passed and d["base_short_of_target"] == (report.base.metric < report.target)
    assert report.seconds > 0
