"""Knowledge distillation: a wide host model (the teacher) teaches the tiny edge model (the student).

The student must fit the device before any training starts: its memory (int8 weights plus the activation
arena a TFLite Micro style planner needs, :func:`memory_estimate`) is checked against a
:class:`MemoryBudget` and a student over budget is refused in one line. The loss is Hinton et al.'s
(arXiv:1503.02531): ``alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE``, the
T^2 keeping the soft term's gradients on the scale of the hard one. The teacher's logits are computed once
(it is frozen). Seeds are grown on the distilled student afterwards like on any base (its sites are
KasminaLayers): see ``tools/bench_distill.py``.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.host.model import BeatClassifier, ModelConfig, build_model, count_host_parameters
from kasmina_edge.host.train import Beats, class_weights, evaluate, predict_logits

# The teacher: four times the tiny student's width (15x its parameters, 56k; ~15x its MACs). Two convolutions
# per block (132k) took three times as long to train for the same held-out macro-F1 on synthetic patients.
TEACHER_CONFIG = ModelConfig(
    name="teacher", channels=(32, 64, 64, 96), kernels=(7, 5, 5, 3), convs_per_block=1, head_hidden=64,
    chunks=(4, 4, 4, 4),
)


class DistillBudgetError(KasminaError):
    """A student that does not fit the device's memory budget."""


@dataclass(frozen=True)
class MemoryEstimate:
    params: int
    weight_bytes: int  # parameters at the deployed width (int8: one byte each; biases int32)
    arena_bytes: int  # the largest live pair of activations (a layer's input and output), int8

    @property
    def total_bytes(self) -> int:
        return self.weight_bytes + self.arena_bytes


@dataclass(frozen=True)
class MemoryBudget:
    """What the device gives the model (default 16 KiB for weights and arena: the tiny student fits with room
    for its seeds, the default base (38 KiB) and the teacher (64 KiB) do not)."""

    max_bytes: int = 16 * 1024
    bytes_per_param: int = 1  # int8 weights
    bytes_per_activation: int = 1  # int8 activations

    def check(self, cfg: ModelConfig) -> MemoryEstimate:
        est = memory_estimate(cfg, self)
        if est.total_bytes > self.max_bytes:
            raise DistillBudgetError(
                f"student {cfg.name!r}: {est.total_bytes:,} B (weights {est.weight_bytes:,} + arena "
                f"{est.arena_bytes:,}) exceeds the memory budget max_bytes={self.max_bytes:,} B"
            )
        return est


def memory_estimate(cfg: ModelConfig, budget: MemoryBudget | None = None) -> MemoryEstimate:
    """Weights and activation arena of ``cfg`` without building it (the check runs before any training).

    Arena: a planner keeps a layer's input and output alive together, so the peak is the largest
    (input + output) over the layers: convolutions (each block's first one halves the length) and the head.
    """
    b = budget or MemoryBudget()
    widths = (1, *cfg.channels)
    params, biases, peak = 0, 0, 0
    length = cfg.window
    for i, (c_in, c_out, k) in enumerate(zip(widths[:-1], widths[1:], cfg.kernels, strict=True)):
        for j in range(cfg.convs_per_block):
            cin = c_in if j == 0 else c_out
            out_len = length // 2 if j == 0 else length
            params += cin * c_out * k + c_out
            biases += c_out
            peak = max(peak, cin * length + c_out * out_len)
            length = out_len
        del i
    head_in = cfg.channels[-1] + cfg.n_rr
    params += head_in * cfg.head_hidden + cfg.head_hidden + cfg.head_hidden * cfg.n_classes + cfg.n_classes
    biases += cfg.head_hidden + cfg.n_classes
    peak = max(peak, cfg.channels[-1] * length + head_in)
    weight_bytes = (params - biases) * b.bytes_per_param + 4 * biases
    return MemoryEstimate(params, weight_bytes, peak * b.bytes_per_activation)


@dataclass(frozen=True)
class DistillConfig:
    temperature: float = 4.0
    alpha: float = 0.7  # weight of the soft (teacher) term; 0 trains on the labels alone
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-2
    weight_decay: float = 1e-4
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise KasminaError(f"distill temperature must be positive, got {self.temperature}")
        if not 0.0 <= self.alpha <= 1.0:
            raise KasminaError(f"distill alpha must be in [0, 1], got {self.alpha}")


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, temperature: float,
                 alpha: float, weight: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
    """``alpha * T^2 * KL(p_teacher^T || p_student^T) + (1 - alpha) * CE(student, labels)``."""
    hard = F.cross_entropy(student, labels, weight=weight)
    if alpha == 0.0:
        return hard
    t = temperature
    soft = F.kl_div(F.log_softmax(student / t, dim=1), F.log_softmax(teacher / t, dim=1), reduction="batchmean",
                    log_target=True)  # fmt: skip
    return alpha * t * t * soft + (1.0 - alpha) * hard


@dataclass
class FitResult:
    model: BeatClassifier
    val_macro_f1: float
    best_epoch: int
    history: list[dict[str, float]] = field(default_factory=list)
    memory: MemoryEstimate | None = None
    seconds: float = 0.0

    @property
    def params(self) -> int:
        return count_host_parameters(self.model)


def _tensors(ds: Beats) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return (torch.from_numpy(np.ascontiguousarray(ds.windows, np.float32)),
            torch.from_numpy(np.ascontiguousarray(ds.rr, np.float32)),
            torch.from_numpy(np.ascontiguousarray(ds.labels, np.int64)))  # fmt: skip


def fit(model_config: ModelConfig, train: Beats, val: Beats, cfg: DistillConfig, *,
        teacher: nn.Module | None = None, budget: MemoryBudget | None = None) -> FitResult:  # fmt: skip
    """Train a fresh ``model_config`` on ``train`` (with ``teacher``: distilled from it; without: labels
    alone), keeping the best validation epoch. ``budget`` is checked first: nothing trains over it."""
    memory = budget.check(model_config) if budget is not None else memory_estimate(model_config)
    t0 = time.perf_counter()
    model = build_model(model_config, seed=cfg.seed)
    x, rr, y = _tensors(train)
    soft = predict_logits(teacher, train) if teacher is not None else None
    alpha = cfg.alpha if soft is not None else 0.0
    model.head.set_rr_stats(rr)
    for site in model.sites.values():
        site.telemetry_enabled = False  # dormant sites: telemetry would only cost time
    params = model.host_parameters()
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, cfg.epochs))
    weight = class_weights(np.asarray(train.labels), n_classes=model_config.n_classes)
    best, best_epoch, best_state = -1.0, 0, copy.deepcopy(model.state_dict())
    history: list[dict[str, float]] = []
    for epoch in range(cfg.epochs):
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(cfg.seed * 100_003 + epoch))
        model.train()
        total = 0.0
        for i in range(0, len(y), cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            logits = model(x[idx], rr[idx])
            loss = distill_loss(logits, soft[idx] if soft is not None else logits.detach(), y[idx],
                                cfg.temperature, alpha, weight)  # fmt: skip
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()
            total += float(loss.detach()) * len(idx)
        sched.step()
        f1 = evaluate(model, val).macro_f1
        history.append({"epoch": epoch + 1, "loss": total / max(1, len(y)), "val_macro_f1": f1})
        if f1 > best:
            best, best_epoch, best_state = f1, epoch + 1, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    for site in model.sites.values():
        site.telemetry_enabled = True
    return FitResult(model.eval(), best, best_epoch, history, memory, time.perf_counter() - t0)


def distill(teacher: nn.Module, student_config: ModelConfig, train: Beats, val: Beats, cfg: DistillConfig,
            budget: MemoryBudget) -> FitResult:  # fmt: skip
    """The student distilled from ``teacher`` within ``budget`` (refused before training when over it)."""
    teacher.eval()
    return fit(student_config, train, val, cfg, teacher=teacher, budget=budget)


def teacher_config(student: ModelConfig) -> ModelConfig:
    """The default teacher for ``student``'s task: :data:`TEACHER_CONFIG`'s shape, the student's window,
    auxiliary features and classes."""
    return dataclasses.replace(TEACHER_CONFIG, window=student.window, n_rr=student.n_rr, n_classes=student.n_classes)


def summary(result: FitResult) -> dict[str, Any]:
    mem = result.memory
    return {"val_macro_f1": result.val_macro_f1, "best_epoch": result.best_epoch, "params": result.params,
            "memory": None if mem is None else dataclasses.asdict(mem) | {"total_bytes": mem.total_bytes},
            "seconds": round(result.seconds, 1)}  # fmt: skip
