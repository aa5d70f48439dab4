"""The host's one lifecycle driver: morph's condition trial and a patient's seed set walk the same stages
(the same G0..G4 event shape; slow: both seeds must earn their way through), and a recipe whose training
changes the host's output is culled with ``health_isolation`` by the driver, for both."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
import torch

from kasmina_edge.ecg.dataset import beats_from_record, concat, synthetic_patients
from kasmina_edge.host.condition_trial import run_trial
from kasmina_edge.host.data import CONDITIONS, SPEC, ConditionSplit
from kasmina_edge.host.model import (
    BeatClassifier,
    build_model,
    count_host_parameters,
    count_macs,
    example_inputs,
)
from kasmina_edge.host.morph_config import MORPH_PRESETS
from kasmina_edge.host.patient import PatientConfig, common_beats, patient_window
from kasmina_edge.host.patient_grow import grow_patient_seed
from kasmina_edge.host.seed_driver import ISOLATION_REASON, SeedDriver
from kasmina_edge.host.tamiyo.masks import Budget
from kasmina_edge.host.train import TRAIN_PRESETS, synthetic_split, train_base

# every gate passes: this file follows the walk, not the gates' thresholds
TRIAL = dataclasses.replace(
    MORPH_PRESETS["tiny"], lr=3e-3, blend_steps=2, blend_batches=2, min_gain=-1.0,
    global_tolerance=1.0, max_oscillation=1.0, max_drift=1e9,
)  # fmt: skip
PATIENT = PatientConfig(
    minutes=2.0, epochs=6, blend_steps=2, common_per_class=20, cv_folds=2, gate_rounds=50, sites=2,
    min_gain=-10.0, n_tolerance=10.0, max_oscillation=10.0,
)  # fmt: skip
WALK = [
    ("gate", "G0"), ("DORMANT", "GERMINATED"), ("GERMINATED", "TRAINING"), ("gate", "G1"), ("TRAINING", "BLENDING"),
    ("gate", "G2"), ("BLENDING", "SHADOWING"), ("gate", "G3"), ("SHADOWING", "PROBATIONARY"), ("gate", "G4"),
    ("PROBATIONARY", "FOSSILIZED"),
]  # fmt: skip


@pytest.fixture(scope="module")
def untrained() -> BeatClassifier:
    model = build_model("tiny", seed=0).eval()
    for site in model.sites.values():
        site.telemetry_enabled = False
    return model


@pytest.fixture(scope="module")
def base() -> BeatClassifier:
    """A tiny base that has learned something (its seeds' losses can fall)."""
    cfg = dataclasses.replace(TRAIN_PRESETS["tiny"], epochs=3, patients=6, minutes=1.5)
    split = synthetic_split(cfg)
    model = train_base(cfg, split.train, split.val).model.eval()
    for site in model.sites.values():
        site.telemetry_enabled = False
    return model


@pytest.fixture(scope="module")
def condition() -> ConditionSplit:
    records = synthetic_patients(3, 1.0, seed=21)
    ds = concat([beats_from_record(r, SPEC) for r in records])
    rng = np.random.default_rng(0)
    noisy = dataclasses.replace(ds, windows=(ds.windows + 0.5 * rng.standard_normal(ds.windows.shape)).astype(np.float32))
    idx = rng.permutation(len(noisy))
    third = len(idx) // 3
    parts = [noisy.subset(np.sort(idx[i * third : (i + 1) * third])) for i in range(3)]
    return ConditionSplit(CONDITIONS["emg"], parts[0], parts[1], parts[2], [], 0)


@pytest.fixture(scope="module")
def record() -> Any:
    return synthetic_patients(1, 3.0, seed=5)[0]


@pytest.fixture(scope="module")
def common() -> Any:
    return common_beats(concat([beats_from_record(r, SPEC) for r in synthetic_patients(2, 1.0, seed=11)]), 20)


def _budget(model: BeatClassifier) -> Budget:
    x, rr = example_inputs(model.config)
    return Budget("edgetpu", int(0.1 * count_host_parameters(model)), int(0.25 * count_macs(model, x, rr)))


def _walk(history: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The shape of a seed's events: each gate by name, each transition as (from, to); no G5, no recipe events."""
    out: list[tuple[str, str]] = []
    for e in history:
        if e.get("event") == "gate" and e["gate"] != "G5":
            out.append(("gate", str(e["gate"])))
        elif e.get("event") == "transition":
            out.append((str(e["from"]), str(e["to"])))
    return out


def _trial(base: BeatClassifier, split: ConditionSplit, events: list[dict[str, Any]], cfg: Any = TRIAL) -> Any:
    return run_trial(base, split, split.val, "site2", "bottleneck_adapter", "fixed_ramp", 1.0, _budget(base), cfg,
                     sink=events.append, seed=1)  # fmt: skip


@pytest.mark.slow
def test_condition_trial_and_patient_seeds_walk_the_same_stages(
    base: BeatClassifier, condition: ConditionSplit, record: Any, common: Any
) -> None:
    events: list[dict[str, Any]] = []
    trial = _trial(base, condition, events)
    assert trial.final_stage == "FOSSILIZED", trial.reason
    assert _walk(events) == WALK
    assert trial.bit_exact_training is True and trial.shadow_agreement is not None

    grown = grow_patient_seed(base, patient_window(record, base, PATIENT), common, PATIENT, target="edgetpu")
    assert len(grown.seeds) == 2, grown.decision
    for g in grown.seeds:
        assert g.final_stage == "FOSSILIZED", g.reason
        assert _walk(g.history) == WALK, g.seed_id
    assert grown.bit_exact_training is True and grown.shadow_agreement is not None
    # a set: the second seed is germinated before the first trains, and every stage runs for both before the next
    both = [(e["seed_id"], e["to"]) for e in grown.events if e.get("event") == "transition"]
    first, second = (g.seed_id for g in grown.seeds)
    assert both[:4] == [(first, "GERMINATED"), (first, "TRAINING"), (second, "GERMINATED"), (second, "TRAINING")]
    assert [to for _, to in both[4:]] == [s for s in ("BLENDING", "SHADOWING", "PROBATIONARY", "FOSSILIZED") for _ in "ab"]


def _leaky(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every recipe's update also nudges the host's head: training that changes the host's output."""
    make = SeedDriver.make_optimizer

    def make_leaky(self: SeedDriver) -> torch.optim.Optimizer:
        opt = make(self)

        def nudge(*_: Any) -> None:
            with torch.no_grad():
                next(iter(self.model.head.parameters())).add_(1e-3)

        opt.register_step_post_hook(nudge)
        return opt

    monkeypatch.setattr(SeedDriver, "make_optimizer", make_leaky)


def test_training_that_changes_the_host_is_culled_with_health_isolation_for_both(
    untrained: BeatClassifier, condition: ConditionSplit, record: Any, common: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = untrained  # the walk stops in TRAINING: nothing to learn needed
    before = {k: v.clone() for k, v in base.state_dict().items()}
    _leaky(monkeypatch)
    events: list[dict[str, Any]] = []
    trial = _trial(base, condition, events, dataclasses.replace(TRIAL, train_epochs=2, min_train_steps=0))
    assert trial.bit_exact_training is False
    assert trial.final_stage == "CULLED" and trial.reason == ISOLATION_REASON
    # culled in TRAINING, before G1; then the embargo is waited out and the slot reset behind G5
    assert _walk(events) == [*WALK[:3], ("TRAINING", "CULLED"), ("CULLED", "EMBARGOED"), ("EMBARGOED", "RESETTING"),
                             ("RESETTING", "DORMANT")]  # fmt: skip
    assert [e["passed"] for e in events if e["event"] == "gate" and e["gate"] == "G5"] == [True]

    cfg = dataclasses.replace(PATIENT, epochs=2)
    grown = grow_patient_seed(base, patient_window(record, base, cfg), common, cfg, target="edgetpu")
    assert grown.bit_exact_training is False and grown.seeds and not grown.fossilized
    for g in grown.seeds:
        assert g.final_stage == "CULLED" and g.reason == ISOLATION_REASON
        assert _walk(g.history) == [*WALK[:3], ("TRAINING", "CULLED"), ("CULLED", "EMBARGOED")]
    for k, v in base.state_dict().items():  # the leak hit the driver's copy, never the caller's base
        assert torch.equal(v, before[k]), k


class WalkOnly:
    """A recipe that learns nothing and hands the gates fixed inputs (G2 fails at ``failing`` sites): it tests
    the walk, not the gates. Every call is written down."""

    def __init__(self, driver: SeedDriver, failing: set[str]) -> None:
        self.d, self.failing = driver, failing
        self.calls: list[str] = []
        gen = torch.Generator().manual_seed(0)
        self.x, self.rr = torch.randn(8, 1, 256, generator=gen), torch.rand(8, 4, generator=gen)

    def train(self, driver: SeedDriver, seeds: list[Any]) -> bool:
        self.calls.append(f"train {len(seeds)}")
        return True

    def gradient_health(self, seed: Any) -> Any:
        from kasmina_edge.host.kasmina import GradientHealthInputs

        return GradientHealthInputs(0, False, (3.0, 2.0, 1.0), (0.5, 0.5, 0.5), window=3)

    def start_blending(self) -> None:
        self.calls.append("start_blending")

    def blend_metric(self) -> float:
        with torch.no_grad():
            self.d.model(self.x, self.rr)  # telemetry for G3
        return 0.5

    def blend_signals(self, seed: Any, metric: float) -> Any:
        from kasmina_edge.host.kasmina import GraftSignals

        return GraftSignals(val_metric=metric, baseline_metric=0.4, drift=0.0, grad_norm=0.5)

    def blend_note(self, metric: float, signals: Any) -> dict[str, Any]:
        return {"metric": metric}

    def after_blend_step(self) -> None:
        self.calls.append("after_blend_step")

    def stability(self, seed: Any, measured: Any) -> Any:
        return dataclasses.replace(measured, drift=1e9 if seed.spec.site in self.failing else 0.0)

    def shadow_agreement(self) -> float:
        return 1.0

    def impact(self, seeds: list[Any]) -> dict[str, Any]:
        self.calls.append(f"impact {[s.spec.site for s in seeds]}")
        return {s.seed_id: self.d.layer(s).system_impact_inputs(s.seed_id, 0.9, min_gain=0.1) for s in seeds}

    def after_probation(self, seeds: list[Any]) -> None:
        self.calls.append(f"after_probation {[s.spec.site for s in seeds]}")


def test_the_driver_walks_a_set_and_culls_each_seed_alone(untrained: BeatClassifier) -> None:
    from kasmina_edge.host.seed_driver import DriverLimits, SeedSpec

    before = {k: v.clone() for k, v in untrained.state_dict().items()}
    events: list[dict[str, Any]] = []
    driver = SeedDriver(untrained, _budget(untrained), DriverLimits(1e-3, 2, 1.0, 3.0), seed=0,
                        watch=["site1", "site2", "site3"], sink=events.append)  # fmt: skip
    recipe = WalkOnly(driver, failing={"site2"})
    specs = [SeedSpec("site1", "bottleneck_adapter", "fixed_ramp"), SeedSpec("site2", "bottleneck_adapter", "fixed_ramp"),
             SeedSpec("site3", "sparse_topk", "fixed_ramp")]  # fmt: skip
    kept, dropped, refused = driver.germinate(specs, baseline=0.4)
    driver.run(recipe)
    assert (kept.final_stage, dropped.final_stage, refused.final_stage) == ("FOSSILIZED", "CULLED", "DORMANT")
    assert _walk(kept.history) == WALK and kept.record is not None and kept.record["stage"] == "FOSSILIZED"
    assert dropped.reason.startswith("gate_G2_failed") and "drift" in dropped.reason and dropped.record is None
    assert refused.reason.startswith("gate_G0_failed") and "edgetpu" in refused.reason and not refused.history[1:]
    # fixed_ramp over 2 steps reaches alpha 1 at the second: BLENDING stops there, not at 3 × 2 steps
    assert recipe.calls == ["train 2", "start_blending", "after_blend_step", "after_blend_step", "impact ['site1']",
                            "after_probation ['site1']"]  # fmt: skip
    assert [e["alpha"] for e in events if e["event"] == "blend_step" and e["seed_id"] == kept.seed_id] == [0.5, 1.0]
    assert driver.bit_exact is True and driver.shadow_agreement == 1.0
    assert events == driver.events  # the sink sees every event the driver keeps
    driver.release_embargoes()  # the culled seed's slot comes back behind G5; the fossilized one stays
    assert driver.engine.stage(dropped.seed_id).name == "DORMANT"
    assert driver.engine.stage(kept.seed_id).name == "FOSSILIZED"
    for k, v in untrained.state_dict().items():
        assert torch.equal(v, before[k]), k
