"""Curriculum stages 0-1: toy 2-D sets, each read through a fixed sensor lift by the ECG beat classifier.

- Stage 0, Gaussian clusters (metric: cluster purity of the model's predicted groups): the clusters'
  centres drift (the cloud turns and moves), so the base's regions no longer cover them.
- Stage 1, moons and spirals in one 4-class plane (metric: accuracy): the same points read through a
  noisy sensor (Gaussian noise on the lifted samples).

Each stage trains the base on clean data (:func:`~kasmina_edge.curriculum.grow.train_task_base`), checks
it is short of the target on the shifted validation data, grows one seed per site through the lifecycle
and fine-tunes every weight as the upper bound (:func:`~kasmina_edge.curriculum.grow.three_arms`), and
scores the three arms on held-out shifted data. A drift early warning
(:mod:`~kasmina_edge.curriculum.drift_warning`) is run on a clean stream and on one whose shift ramps
up; its lead and false alarms are checks of the stage. Shift severities, targets and the seeds'
settings were chosen on the validation splits only (the factories at the end hold them); the test
splits are drawn from their own seeds and read once, for the report.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kasmina_edge.curriculum.drift_warning import Metric, WarningResult, calibrate, evaluate_warning
from kasmina_edge.curriculum.grow import (
    Arms,
    GrowSettings,
    ShiftTask,
    TaskData,
    quick_settings,
    task_model_config,
    three_arms,
    train_task_base,
)
from kasmina_edge.curriculum.stage import ArmScore, StageContext, StageReport
from kasmina_edge.curriculum.toy_data import (
    Lift,
    Sampler,
    ToyShift,
    ToySizes,
    gaussian_clusters,
    moons_and_spirals,
    purity,
    toy_task,
)
from kasmina_edge.host.morph_config import MorphConfig


def accuracy_of(pred: np.ndarray, labels: np.ndarray) -> float:
    return float((np.asarray(pred) == np.asarray(labels)).mean()) if len(labels) else float("nan")


METRICS: dict[str, Metric] = {"cluster purity": purity, "accuracy": accuracy_of}


@dataclass(frozen=True)
class WarningPlan:
    steps: int = 40  # steps of the streams; the ramped one goes from severity 0 to 1 over them
    step_samples: int = 50
    window: int = 200  # samples in the detector's (and the windowed metric's) sliding window
    margin: float = 1.5  # threshold = margin x the largest clean-validation statistic


@dataclass(frozen=True)
class ToyStageSpec:
    index: int
    name: str
    domain: str
    metric: str  # a key of METRICS
    target: float
    sampler: Sampler
    n_classes: int
    shift: ToyShift
    lift_scale: float = 1.0
    sizes: ToySizes = ToySizes()
    quick_sizes: ToySizes = ToySizes(train=1200, val=400, adapt=400, shift_val=400, shift_test=800, clean_test=600)
    base_epochs: int = 30
    quick_base_epochs: int = 15
    quick_train_steps: int = 150  # seeds' least TRAINING updates in a quick run (quick_settings' 60 were too few)
    base_lr: float = 1e-2  # 3e-3 left the spirals under-fit in the quick run's 15 epochs (clean val 0.89)
    # fine-tuning, the upper bound, gets at least the seeds' number of updates at the base's rate (grow's
    # defaults, 10 epochs at 1e-3, are 3 epochs in a quick run: ~15 updates against a seed's 300)
    fine_tune_epochs: int = 60
    fine_tune_lr: float = 1e-2
    morph: MorphConfig = field(default_factory=lambda: MorphConfig(target=None, gate_min_support=1))
    sites: tuple[str, ...] | None = None
    warning: WarningPlan = WarningPlan()


class ToyStage:
    """A curriculum stage on one toy set (the registry's factories below build the two)."""

    def __init__(self, spec: ToyStageSpec) -> None:
        self.spec = spec
        self.index, self.name, self.domain = spec.index, spec.name, spec.domain

    def settings(self, task: ShiftTask, quick: bool) -> GrowSettings:
        s = self.spec
        settings = GrowSettings(model=task_model_config(f"toy{s.index}", task), base_epochs=s.base_epochs,
                                base_lr=s.base_lr, fine_tune_epochs=s.fine_tune_epochs, fine_tune_lr=s.fine_tune_lr,
                                morph=s.morph, sites=s.sites)  # fmt: skip
        if quick:
            settings = quick_settings(settings)
            morph = dataclasses.replace(settings.morph, min_train_steps=s.quick_train_steps)
            settings = dataclasses.replace(settings, base_epochs=s.quick_base_epochs, morph=morph)
        return settings

    def task(self, seed: int, quick: bool) -> tuple[ShiftTask, Lift]:
        s = self.spec
        lift = Lift.make(scale=s.lift_scale)
        return toy_task(s.sampler, s.n_classes, s.shift, lift, s.quick_sizes if quick else s.sizes, seed), lift

    def run(self, ctx: StageContext) -> StageReport:
        s, t0 = self.spec, time.perf_counter()
        task, lift = self.task(ctx.seed, ctx.quick)
        settings = self.settings(task, ctx.quick)
        ctx.say(f"stage {s.index} {s.name}: base ({settings.base_epochs} epochs) on clean data, shift {task.name}")
        base = train_task_base(task, settings, seed=ctx.seed)
        base_val = self.score(base, task.shift_val)
        ctx.say(f"stage {s.index}: base {s.metric} on shifted validation {base_val:.3f} (target {s.target})")
        arms = three_arms(task, base, settings, seed=ctx.seed, say=ctx.say)
        report = self.report(task, arms, settings, base_val)
        ctx.say(f"stage {s.index}: drift early warning")
        warning = self.warning(base, task, lift, ctx.seed)
        report.checks["drift_warning_before_drop"] = warning.warned_ahead
        report.checks["drift_warning_no_false_alarm"] = warning.false_alarms == 0
        report.base.detail["drift_warning"] = warning.to_dict()
        report.seconds = time.perf_counter() - t0
        return report

    def score(self, model: Any, data: TaskData) -> float:
        from kasmina_edge.host.train import predict_logits

        pred = predict_logits(model, data).argmax(1).numpy()
        return METRICS[self.spec.metric](pred, data.labels)

    def arm(self, model: Any, task: ShiftTask, params: int, **extra: Any) -> ArmScore:
        from kasmina_edge.host.train import predict_logits

        def both(data: TaskData) -> dict[str, float]:
            pred = predict_logits(model, data).argmax(1).numpy()
            return {"accuracy": accuracy_of(pred, data.labels), "purity": purity(pred, data.labels)}

        shifted, clean = both(task.shift_test), both(task.clean_test)
        detail = {"shift_test": shifted, "clean_test": clean, "shift_val": self.score(model, task.shift_val), **extra}
        return ArmScore(metric=shifted["purity" if self.spec.metric == "cluster purity" else "accuracy"],
                        params=params, detail=detail)  # fmt: skip

    def report(self, task: ShiftTask, arms: Arms, settings: GrowSettings, base_val: float) -> StageReport:
        s, cfg = self.spec, settings.morph
        trials = [{k: v for k, v in t.summary().items() if k not in ("history", "record")} for t in arms.trials]
        base = self.arm(arms.base, task, arms.base_params)
        seeded = self.arm(arms.seeded, task, arms.seed_params, trials=_jsonable(trials),
                          fossilized=[t.site for t in arms.trials if t.fossilized])  # fmt: skip
        tuned = self.arm(arms.fine_tuned, task, arms.fine_tune_params)
        clean_drop = base.detail["clean_test"]["accuracy"] - seeded.detail["clean_test"]["accuracy"]
        checks = {
            "base_short_on_validation": base_val < s.target,
            "a_seed_fossilized": any(t.fossilized for t in arms.trials),
            "seeded_clean_within_tolerance": clean_drop <= cfg.global_tolerance,
        }
        notes = [
            f"shift {task.name}: base trained on clean data only; arms scored on held-out shifted data",
            f"lift: {task.window} random Fourier samples per point (scale {s.lift_scale}), no auxiliary features",
            f"seeds: {settings.blueprint} at {', '.join(settings.sites or settings.model.site_names)}, "
            f"lr {cfg.lr}, {cfg.train_epochs} epochs (>= {cfg.min_train_steps} steps), min gain {cfg.min_gain}, "
            f"clean tolerance {cfg.global_tolerance}; adapt holds {task.name} samples plus clean replay",
            f"base {s.metric} on shifted validation {base_val:.3f} vs target {s.target}",
        ]
        return StageReport(
            index=s.index, name=s.name, domain=s.domain, metric=s.metric, target=s.target, base=base,
            seeded=seeded, fine_tuned=tuned, lifecycle=_jsonable(arms.events), checks=checks, notes=notes,
        )  # fmt: skip

    def warning(self, base: Any, task: ShiftTask, lift: Lift, seed: int) -> WarningResult:
        s, plan = self.spec, self.spec.warning
        det = calibrate(base, task.train.windows, task.val.windows, window=plan.window, margin=plan.margin, seed=seed)
        n = plan.steps * plan.step_samples
        clean_pts = s.sampler(n, seed * 1000 + 90)
        ramp_pts = s.sampler(n, seed * 1000 + 91)
        severity = np.repeat(np.linspace(0.0, 1.0, plan.steps), plan.step_samples)
        ramped = (s.shift.apply(ramp_pts, lift, severity, seed * 1000 + 92), ramp_pts.labels, severity)
        return evaluate_warning(base, det, (lift(clean_pts.xy), clean_pts.labels), ramped,
                                step=plan.step_samples, target=s.target, metric=METRICS[s.metric])  # fmt: skip


def _jsonable(obj: Any) -> Any:
    """Events and trial summaries as plain JSON values (numpy scalars and arrays, tensors, enums)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "name"):  # an enum (a lifecycle stage, a gate)
        return str(obj.name)
    return str(obj)


# -- the registry's factories --------------------------------------------------------------------------------
# Chosen on the validation splits (seed 0): the seeds' learning rate, steps and site, the shift's severity and
# the target, so that the base is short of the target on shifted validation data and the base with its seed
# reaches it there. Stage 0 (quick runs): base 0.762, seeded 0.848 purity. Stage 1 (full run): base 0.884,
# seeded 0.911 accuracy (quick: 0.884, 0.909). Then, over seeds 0-3 (quick, validation only), stage 1's seed
# site with the most seeds passing on validation and the highest mean seeded score (site1 over site3, site2).
# Stage 0's 600 quick steps scored higher still but moved clean data by more than G4's tolerance: kept 300.
def _seeds(lr: float) -> MorphConfig:
    return MorphConfig(target=None, gate_min_support=1, lr=lr, train_epochs=20, max_mac_fraction=1.0)


def gaussian_clusters_stage() -> ToyStage:
    return ToyStage(ToyStageSpec(
        index=0, name="gaussian_clusters", domain="toy 2-D: Gaussian clusters whose centres drift",
        metric="cluster purity", target=0.84, sampler=gaussian_clusters, n_classes=4,
        shift=ToyShift("drift", angle=float(np.radians(24.0)), offset=(1.2, 0.8)),
        morph=_seeds(1e-2), sites=("site3",), quick_train_steps=300,
    ))  # fmt: skip


def spirals_moons_stage() -> ToyStage:
    # The noise costs the base only a few points, so the shifted splits are large (the gap must not be split
    # noise) and the quick run keeps the full base (30 epochs, 2000 samples: seconds on two cores); with the
    # quick base (15 epochs, 1200 samples) the seed gained too little on validation (+0.009) to pass G4.
    full = ToySizes(shift_val=1500, shift_test=3000)
    return ToyStage(ToyStageSpec(
        index=1, name="spirals_moons", domain="toy 2-D: two moons and two spirals through a noisy sensor",
        metric="accuracy", target=0.90, sampler=moons_and_spirals, n_classes=4,
        shift=ToyShift("noise", sigma=0.3), morph=_seeds(1e-2), sites=("site1",),
        sizes=full, quick_sizes=full, quick_base_epochs=30, quick_train_steps=150,
    ))  # fmt: skip
