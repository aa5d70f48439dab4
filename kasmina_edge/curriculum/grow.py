"""Base, base + seeds and full fine-tuning on any classification task with a distribution shift.

The ECG engine is reused as it is: a task's samples are laid out as the beat classifier reads beats
(``windows`` (n, 1, W) plus ``rr``, here any (n, K) auxiliary features), so :class:`BeatClassifier`
with the task's window, features and classes is the base, :func:`host.condition_trial.run_trial` walks
each seed through the lifecycle with its gates, and :func:`host.fine_tune.fine_tune` is the upper bound.
A stage supplies a :class:`ShiftTask` (clean data the base trains on, shifted data a seed adapts to,
with the clean twin of every shifted adaptation sample where it has one) and scores the three models
with its own metric.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.curriculum.stage import Say
from kasmina_edge.host.model import BeatClassifier, ModelConfig
from kasmina_edge.host.morph_config import MorphConfig


@dataclass
class TaskData:
    """Samples as the classifier reads them (the host's ``Beats`` protocol)."""

    windows: np.ndarray  # (n, 1, W) float32
    rr: np.ndarray  # (n, K) float32: auxiliary features (K may be 0)
    labels: np.ndarray  # (n,) int64

    def __post_init__(self) -> None:
        n = len(self.labels)
        if (
            self.windows.ndim != 3
            or self.windows.shape[1] != 1
            or len(self.windows) != n
            or len(self.rr) != n
        ):
            raise KasminaError(
                f"task data: windows {self.windows.shape}, rr {self.rr.shape}, labels {self.labels.shape} "
                "must be (n, 1, W), (n, K), (n,)"
            )
        self.windows = np.ascontiguousarray(self.windows, dtype=np.float32)
        self.rr = np.ascontiguousarray(self.rr, dtype=np.float32).reshape(n, -1)
        self.labels = np.ascontiguousarray(self.labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, idx: np.ndarray) -> TaskData:
        return TaskData(self.windows[idx], self.rr[idx], self.labels[idx])


@dataclass
class ShiftTask:
    """A domain's data: clean (the base learns it) and shifted (the seeds adapt to it)."""

    name: str  # the shift, e.g. "impulse_noise"
    n_classes: int
    train: TaskData  # clean: the base's training data
    val: TaskData  # clean: the base's validation (and G4's clean reference)
    adapt: TaskData  # shifted: what seeds and fine-tuning train on
    shift_val: TaskData  # shifted: what the gates judge on
    shift_test: TaskData  # shifted, held out: what the stage reports
    clean_test: TaskData  # clean, held out: what a seed must not break
    adapt_clean: TaskData | None = None  # the clean twin of each ``adapt`` sample, same order (None: none)

    @property
    def window(self) -> int:
        return int(self.train.windows.shape[2])

    @property
    def n_aux(self) -> int:
        return int(self.train.rr.shape[1])


@dataclass(frozen=True)
class GrowSettings:
    model: ModelConfig
    base_epochs: int = 30
    base_lr: float = 3e-3
    batch_size: int = 128
    fine_tune_epochs: int = 10
    fine_tune_lr: float = 1e-3
    morph: MorphConfig = field(default_factory=lambda: MorphConfig(target=None, gate_min_support=1))
    sites: tuple[str, ...] | None = None  # None: every site, one trial each
    blueprint: str = "bottleneck_adapter"
    grafting: str = "fixed_ramp"
    intensity: float = 1.0


@dataclass
class Arms:
    base: nn.Module
    seeded: nn.Module  # the base with the fossilized seeds that add up (combine_seeds); the base when none
    fine_tuned: nn.Module
    trials: list[Any]  # host.condition_trial.TrialResult, one per site tried
    events: list[dict[str, Any]]  # every lifecycle, gate and recipe event of every trial
    base_params: int
    seed_params: int  # parameters of the fossilized seeds
    fine_tune_params: int  # parameters full fine-tuning trains


def task_model_config(name: str, task: ShiftTask, channels: tuple[int, ...] = (8, 16, 16, 24)) -> ModelConfig:
    """A small four-site classifier sized to the task (kernels shrink with a short window)."""
    k = (5, 3, 3, 3) if task.window < 64 else (7, 5, 5, 3)
    chunks = tuple(2 if c % 2 == 0 else 1 for c in channels)
    return ModelConfig(
        name=name, channels=channels, kernels=k, convs_per_block=1, head_hidden=32, chunks=chunks,
        window=task.window, n_rr=task.n_aux, n_classes=task.n_classes,
    )  # fmt: skip


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def accuracy(model: nn.Module, data: TaskData) -> float:
    from kasmina_edge.host.train import predict_logits

    pred = predict_logits(model, data).argmax(1).numpy()
    return float((pred == data.labels).mean()) if len(data) else float("nan")


def train_task_base(
    task: ShiftTask, settings: GrowSettings, *, seed: int = 0, say: Say | None = None
) -> BeatClassifier:
    """The base on the clean data only; the epoch with the best clean validation accuracy is kept."""
    from kasmina_edge.host.data import to_tensors
    from kasmina_edge.host.model import build_model
    from kasmina_edge.host.train import class_weights, train_epoch

    model = build_model(settings.model, seed=seed)
    if task.n_aux:
        model.head.set_rr_stats(torch.from_numpy(task.train.rr))
    params = model.host_parameters()
    opt = torch.optim.AdamW(params, lr=settings.base_lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, settings.base_epochs))
    loss_fn = nn.CrossEntropyLoss(weight=class_weights(task.train.labels, n_classes=task.n_classes))
    data = to_tensors(task.train)  # type: ignore[arg-type]
    best, best_state = -1.0, copy.deepcopy(model.state_dict())
    for epoch in range(settings.base_epochs):
        train_epoch(
            model, opt, data, loss_fn, batch_size=settings.batch_size, seed=seed, epoch=epoch, params=params
        )
        sched.step()
        acc = accuracy(model, task.val)
        if acc > best:
            best, best_state = acc, copy.deepcopy(model.state_dict())
        if say is not None:
            say(f"{task.name}: base epoch {epoch + 1}/{settings.base_epochs}, clean val accuracy {acc:.3f}")
    model.load_state_dict(best_state)
    return model.eval()


def _split(task: ShiftTask) -> Any:
    """The task as the condition trial reads it (a condition named after the shift, no raw records)."""
    from kasmina_edge.host.data import Condition, ConditionSplit

    cond = Condition(name=task.name, description=f"curriculum shift {task.name}", kind="curriculum")
    return ConditionSplit(condition=cond, adapt=task.adapt, val=task.shift_val, test=task.shift_test,  # type: ignore[arg-type]
                          records=[], lead=0, adapt_clean=task.adapt_clean)  # type: ignore[arg-type]  # fmt: skip


def three_arms(
    task: ShiftTask, base: BeatClassifier, settings: GrowSettings, *, seed: int = 0, say: Say | None = None
) -> Arms:
    """One seed trial per site (each on a fresh copy of the base); every seed that fossilized is kept, each in
    its own site. Fine-tuning trains every base weight on the same shifted data."""
    from kasmina_edge.host.condition_trial import run_trial
    from kasmina_edge.host.fine_tune import fine_tune
    from kasmina_edge.host.tamiyo.masks import Budget

    base_params = count_params(base)
    cfg = settings.morph
    budget = Budget(target=cfg.target, max_params=max(1, int(cfg.max_seed_fraction * base_params)))
    split = _split(task)
    sites = settings.sites or tuple(base.config.site_names)
    trials: list[Any] = []
    events: list[dict[str, Any]] = []
    for i, site in enumerate(sites):
        trial = run_trial(base, split, task.val, site, settings.blueprint, settings.grafting, settings.intensity,  # type: ignore[arg-type]
                          budget, cfg, sink=events.append, seed=seed + i, say=say)  # fmt: skip
        trials.append(trial)
    seeded, kept = combine_seeds(base, [t for t in trials if t.fossilized], task, cfg.global_tolerance)
    for t in trials:
        if t.fossilized and t not in kept:
            events.append({"event": "combination_refused", "seed_id": t.seed_id, "site": t.site,
                           "reason": "adds nothing to the seeds already kept on the shifted validation data"})  # fmt: skip
    seed_params = sum(t.param_count for t in kept)
    if say is not None:
        say(f"{task.name}: full fine-tuning ({settings.fine_tune_epochs} epochs)")
    tuned = fine_tune(base, split, settings.fine_tune_epochs, settings.fine_tune_lr, settings.batch_size, seed,
                      min_support=cfg.gate_min_support)  # fmt: skip
    tuned_params = sum(p.numel() for p in base.host_parameters())
    return Arms(base, seeded.eval(), tuned, trials, events, base_params, seed_params, tuned_params)


def combine_seeds(base: BeatClassifier, fossilized: list[Any], task: ShiftTask, tolerance: float) -> tuple[nn.Module, list[Any]]:
    """Seeds grown apart do not always add up: each is added, best gain first, only while the shifted validation
    accuracy rises and clean validation stays within ``tolerance`` of the base (G4's rule, on the combination)."""
    from kasmina_edge.host.conditions_morph import seeded_model

    model: nn.Module = copy.deepcopy(base)
    best, clean_floor = accuracy(model, task.shift_val), accuracy(base, task.val) - tolerance
    kept: list[Any] = []
    for trial in sorted(fossilized, key=lambda t: -t.gain):
        candidate = seeded_model(model, trial)
        score = accuracy(candidate, task.shift_val)
        if score > best and accuracy(candidate, task.val) >= clean_floor:
            model, best = candidate, score
            kept.append(trial)
    return model.eval(), kept


def quick_settings(settings: GrowSettings) -> GrowSettings:
    """The same recipe, smaller: for tests and CI's slow tier."""
    m = dataclasses.replace(
        settings.morph, train_epochs=3, min_train_steps=60, blend_steps=4, blend_batches=4
    )
    return dataclasses.replace(settings, base_epochs=max(5, settings.base_epochs // 3),
                               fine_tune_epochs=max(3, settings.fine_tune_epochs // 3), morph=m)  # fmt: skip
