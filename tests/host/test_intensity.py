"""Intensity control: TOML configs and the library, lr scales, activation schedules, safety overrides on a
real driver and a real condition trial."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from kasmina_edge.ecg.dataset import BeatDataset, beats_from_record, concat, synthetic_patients
from kasmina_edge.host.condition_trial import run_trial
from kasmina_edge.host.data import CONDITIONS, SPEC, ConditionSplit
from kasmina_edge.host.intensity import (
    ActivationSchedule,
    IntensityConfig,
    IntensityControls,
    IntensityError,
    ScheduledGrafting,
    library,
    load_config,
    resolve,
)
from kasmina_edge.host.kasmina.grafting import GraftSignals, make_grafting
from kasmina_edge.host.model import BeatClassifier, count_host_parameters, count_macs, example_inputs
from kasmina_edge.host.morph_config import MORPH_PRESETS
from kasmina_edge.host.seed_driver import DriverLimits, SeedDriver, SeedSpec
from kasmina_edge.host.tamiyo.masks import Budget
from kasmina_edge.host.train import TRAIN_PRESETS, synthetic_split, train_base

SITE = "site0"
TRIAL = dataclasses.replace(
    MORPH_PRESETS["tiny"], lr=3e-3, blend_steps=4, blend_batches=2, train_epochs=2, min_train_steps=30, min_gain=-1.0,
    global_tolerance=1.0, max_oscillation=1.0, max_drift=1e9, drift_penalty=0.0,
)  # fmt: skip


def cfg(**body: object) -> IntensityConfig:
    return IntensityConfig.model_validate({"name": "t", **body})


# --------------------------------------------------------------------------- files


def test_library_lists_the_maintained_configs_and_each_loads_under_its_own_name() -> None:
    names = list(library())
    assert {"default", "cautious", "aggressive", "edge-tpu"} <= set(names) and names == sorted(names)
    for name in names:
        c = resolve(name)
        assert c.name == name and c.description


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('name = "x"\n[safety]\nbogus = 1\n', r"bad\.toml: safety\.bogus: Extra inputs are not permitted"),
        ('name = "x"\n[lr]\ndefault = -1\n', r"bad\.toml: lr\.default: Input should be greater than 0"),
        ('name = "x"\n[schedule]\nkind = "zigzag"\n', r"bad\.toml: schedule\.kind: Input should be"),
        ('name = "x"\n[lr.per_blueprint]\nglu = 0\n', r"bad\.toml: lr: Value error, per_blueprint\.glu must be"),
        ("[lr]\n", r"bad\.toml: name: Field required"),
        ('name = "x\n', r"bad\.toml: not TOML"),
    ],
)
def test_a_bad_file_fails_in_one_line_naming_file_and_field(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(IntensityError, match=match) as info:
        load_config(path)
    assert "\n" not in str(info.value)


def test_unknown_names_and_missing_files_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(IntensityError, match="not in the library"):
        resolve("nope")
    with pytest.raises(IntensityError, match="no such intensity config"):
        resolve(str(tmp_path / "absent.toml"))
    (tmp_path / "mine.toml").write_text('name = "mine"\n[lr]\ndefault = 0.5\n')
    assert resolve(str(tmp_path / "mine.toml")).lr.default == 0.5


# --------------------------------------------------------------------------- lr and schedules


def test_lr_scale_is_per_blueprint_times_intensity_clamped_by_safety() -> None:
    c = cfg(lr={"default": 0.5, "per_blueprint": {"glu": 3.0}}, safety={"max_lr_scale": 4.0})
    assert c.lr_scale("bottleneck_adapter", 2.0) == pytest.approx(1.0)
    assert c.lr_scale("glu", 1.0) == pytest.approx(3.0)
    assert c.lr_scale("glu", 2.0) == pytest.approx(4.0)  # 6 clamped


def test_schedules_warm_up_at_zero_and_end_exactly_at_one() -> None:
    lin = ActivationSchedule(kind="linear", warmup_steps=2)
    assert [lin.alpha(k, 4) for k in range(7)] == [0.0, 0.0, 0.0, 0.25, 0.5, 0.75, 1.0]
    cos = ActivationSchedule(kind="cosine")
    vals = [cos.alpha(k, 4) for k in range(5)]
    assert vals[0] == 0.0 and vals[-1] == 1.0 and vals == sorted(vals) and vals[1] < 0.25  # slow start
    step = ActivationSchedule(kind="step", levels=2)
    assert [step.alpha(k, 4) for k in range(5)] == [0.0, 0.0, 0.5, 0.5, 1.0]


def test_scheduled_grafting_takes_warm_up_steps_then_lets_the_strategy_gate() -> None:
    inner = make_grafting("performance_linked", steps=2)
    g = ScheduledGrafting(inner, ActivationSchedule(warmup_steps=2), ramp_steps=2)
    worse = GraftSignals(val_metric=0.1, baseline_metric=0.9)
    assert [g.step(worse) for _ in range(3)] == [0.0, 0.0, 0.0]  # warm-up taken, then held by the metric
    assert g.progress == 2 and g.strategy_id == inner.strategy_id
    ok = GraftSignals(val_metric=0.9, baseline_metric=0.9)
    assert [g.step(ok) for _ in range(3)] == [0.5, 1.0, 1.0]


# --------------------------------------------------------------------------- on a real driver


@pytest.fixture(scope="module")
def base() -> BeatClassifier:
    tc = dataclasses.replace(TRAIN_PRESETS["tiny"], epochs=3, patients=6, minutes=1.5)
    split = synthetic_split(tc)
    model = train_base(tc, split.train, split.val).model.eval()
    for site in model.sites.values():
        site.telemetry_enabled = False
    return model


def _budget(base: BeatClassifier) -> Budget:
    x, rr = example_inputs(base.config)
    return Budget(None, count_host_parameters(base), count_macs(base, x, rr))


def _driver(base: BeatClassifier, c: IntensityConfig) -> tuple[SeedDriver, IntensityControls]:
    ctl = IntensityControls(c)
    d = SeedDriver(base, _budget(base), DriverLimits(1e-3, 4, 1.0, 1e9), seed=0, watch=[SITE], controls=ctl)
    d.germinate([SeedSpec(SITE, "bottleneck_adapter", "fixed_ramp", 2.0)], baseline=0.5)
    d.make_optimizer()
    return d, ctl


def test_the_driver_applies_the_lr_scale_and_forced_culls(base: BeatClassifier) -> None:
    d, _ = _driver(base, cfg(lr={"per_blueprint": {"bottleneck_adapter": 0.25}}))
    assert d.opt is not None
    (group,) = [g for g in d.opt.param_groups if g.get("seed_id")]
    assert group["lr"] == pytest.approx(1e-3 * 2.0 * 0.25)
    d2, ctl = _driver(base, cfg(safety={"forced_cull": [f"site:{SITE}"]}))
    # frozen at once; culled at the first safe point (after the seed's next backward)
    assert ctl.events[0].action == "forced_cull" and ctl.frozen == {d2.seeds[0].seed_id}
    assert any(e.get("event") == "safety_override" for e in d2.events)


def test_a_loss_spike_freezes_the_seed(base: BeatClassifier) -> None:
    d, ctl = _driver(base, cfg(safety={"loss_spike_factor": 2.0, "action": "freeze"}))
    (seed,) = d.alive()
    d.emit({"event": "train_epoch", "seed_id": seed.seed_id, "loss": 1.0})
    d.emit({"event": "train_epoch", "seed_id": seed.seed_id, "loss": 1.5})
    assert not ctl.frozen
    d.emit({"event": "train_epoch", "seed_id": seed.seed_id, "loss": 2.5})
    assert ctl.frozen == {seed.seed_id} and "loss 2.5 > 2 x best 1" in ctl.events[0].reason
    assert d.opt is not None and all(g["lr"] == 0.0 for g in d.opt.param_groups if g.get("seed_id"))
    assert d.alive() == [seed]  # frozen, not culled


@pytest.fixture(scope="module")
def noisy() -> tuple[ConditionSplit, BeatDataset]:
    """Three synthetic patients' beats with strong noise (as test_condition_trial grows its seeds)."""
    clean = concat([beats_from_record(r, SPEC) for r in synthetic_patients(3, 1.0, seed=21)])
    rng = np.random.default_rng(0)
    windows = (clean.windows + 0.5 * rng.standard_normal(clean.windows.shape)).astype(np.float32)
    bad = dataclasses.replace(clean, windows=windows)
    return ConditionSplit(CONDITIONS["emg"], bad, bad, None, [], 0), clean


@pytest.mark.slow  # three real trials: ~40 s idle, more on busy cores
def test_a_trial_follows_the_schedule_and_a_gradient_bound_aborts_it(
    base: BeatClassifier, noisy: tuple[ConditionSplit, BeatDataset]
) -> None:
    split, clean = noisy
    budget = _budget(base)
    sched = cfg(schedule={"kind": "linear", "warmup_steps": 2})
    t = run_trial(base, split, clean, SITE, "bottleneck_adapter", "fixed_ramp", 1.0, budget, TRIAL, seed=0,
                  controls=IntensityControls(sched))  # fmt: skip
    alphas = [e["alpha"] for e in t.history if e.get("event") == "blend_step"]
    assert alphas, t.reason
    assert alphas[:6] == [0.0, 0.0, 0.25, 0.5, 0.75, 1.0]
    plain = run_trial(base, split, clean, SITE, "bottleneck_adapter", "fixed_ramp", 1.0, budget, TRIAL, seed=0)
    assert [e["alpha"] for e in plain.history if e.get("event") == "blend_step"][:2] == [0.25, 0.5]
    ctl = IntensityControls(cfg(safety={"max_grad_norm": 1e-12, "action": "abort"}))
    before = {k: v.clone() for k, v in base.state_dict().items()}
    aborted = run_trial(base, split, clean, SITE, "bottleneck_adapter", "fixed_ramp", 1.0, budget, TRIAL, seed=0,
                        controls=ctl)  # fmt: skip
    assert aborted.final_stage == "CULLED" and "gradient norm" in aborted.reason
    assert ctl.events and ctl.events[0].action == "abort"
    assert all(torch.equal(v, base.state_dict()[k]) for k, v in before.items())  # the base is untouched
    forced = run_trial(base, split, clean, SITE, "bottleneck_adapter", "fixed_ramp", 1.0, budget, TRIAL, seed=0,
                       controls=IntensityControls(cfg(safety={"forced_cull": ["bottleneck_adapter"]})))  # fmt: skip
    assert forced.final_stage == "CULLED" and "forced cull" in forced.reason


def test_a_schedule_longer_than_blending_allows_is_refused(
    base: BeatClassifier, noisy: tuple[ConditionSplit, BeatDataset]
) -> None:
    split, clean = noisy
    with pytest.raises(IntensityError, match="exceeds the 12 grafting steps"):
        run_trial(base, split, clean, SITE, "bottleneck_adapter", "fixed_ramp", 1.0, _budget(base), TRIAL,
                  controls=IntensityControls(cfg(schedule={"warmup_steps": 10})))  # fmt: skip
