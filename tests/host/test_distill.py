"""Knowledge distillation: the memory estimate counts what the model holds, the budget refuses before any
training, the loss is Hinton's, and a short distillation moves the student towards its teacher."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from kasmina_edge.host.distill import (
    TEACHER_CONFIG,
    DistillBudgetError,
    DistillConfig,
    MemoryBudget,
    distill,
    distill_loss,
    fit,
    memory_estimate,
    teacher_config,
)
from kasmina_edge.host.model import CONFIGS, ModelConfig, build_model, count_host_parameters


@pytest.mark.parametrize("cfg", [CONFIGS["tiny"], CONFIGS["default"], TEACHER_CONFIG,
                                 ModelConfig(name="task", channels=(4, 8, 8, 8), chunks=(1, 1, 1, 1), window=64,
                                             n_rr=3, n_classes=7)])  # fmt: skip
def test_memory_estimate_counts_the_models_own_parameters(cfg: ModelConfig) -> None:
    est = memory_estimate(cfg)
    assert est.params == count_host_parameters(build_model(cfg))
    assert est.weight_bytes >= est.params  # int8 weights, int32 biases
    # the first convolution alone keeps its input window and its output alive
    assert est.arena_bytes >= cfg.window + cfg.channels[0] * cfg.window // 2


def test_the_budget_keeps_the_student_and_refuses_the_teacher_naming_the_limit() -> None:
    budget = MemoryBudget()
    assert budget.check(CONFIGS["tiny"]).total_bytes <= budget.max_bytes
    with pytest.raises(DistillBudgetError, match=r"'teacher'.*exceeds the memory budget max_bytes=16,384 B"):
        budget.check(TEACHER_CONFIG)
    wider = MemoryBudget(bytes_per_param=4)  # float32 weights: the tiny model no longer fits 16 KiB
    with pytest.raises(DistillBudgetError):
        wider.check(CONFIGS["tiny"])


def test_an_over_budget_student_is_refused_before_any_training(monkeypatch: pytest.MonkeyPatch) -> None:
    import kasmina_edge.host.distill as d

    def no_build(*a: object, **k: object) -> None:
        raise AssertionError("built a model over budget")

    monkeypatch.setattr(d, "build_model", no_build)
    x = _beats(8, 0)
    with pytest.raises(DistillBudgetError):
        fit(CONFIGS["default"], x, x, DistillConfig(epochs=1), budget=MemoryBudget())


def test_distill_loss_is_kl_at_temperature_plus_cross_entropy() -> None:
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(16, 5, generator=g), torch.randn(16, 5, generator=g)
    y = torch.randint(0, 5, (16,), generator=g)
    ce = F.cross_entropy(s, y)
    assert torch.allclose(distill_loss(s, t, y, 4.0, 0.0), ce)
    # the teacher's own logits: the soft term vanishes, only the weighted hard term is left
    assert torch.allclose(distill_loss(s, s, y, 4.0, 0.7), 0.3 * ce, atol=1e-6)
    p_t = F.softmax(t / 2.0, dim=1)
    kl = (p_t * (p_t.log() - F.log_softmax(s / 2.0, dim=1))).sum(1).mean()
    assert torch.allclose(distill_loss(s, t, y, 2.0, 1.0), 4.0 * kl, atol=1e-5)


def test_bad_settings_are_one_line_errors() -> None:
    from kasmina_edge.contracts.errors import KasminaError

    with pytest.raises(KasminaError, match="temperature"):
        DistillConfig(temperature=0.0)
    with pytest.raises(KasminaError, match="alpha"):
        DistillConfig(alpha=1.5)


def _beats(n: int, seed: int) -> object:
    """Toy beats: the class is a bump's width and height (learnable in a few epochs), RR uninformative."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    t = np.arange(256)
    width = np.array([6.0, 16.0, 30.0])[y]
    x = np.exp(-0.5 * ((t[None, :] - 90) / width[:, None]) ** 2) * np.array([1.0, 1.5, 0.6])[y][:, None]
    x = x + 0.1 * rng.standard_normal(x.shape)
    rr = 0.8 + 0.05 * rng.standard_normal((n, 4))

    @dataclasses.dataclass
    class Toy:
        windows: np.ndarray
        rr: np.ndarray
        labels: np.ndarray

        def __len__(self) -> int:
            return len(self.labels)

    return Toy(x[:, None, :].astype(np.float32), rr.astype(np.float32), y.astype(np.int64))


@pytest.mark.slow
def test_a_short_distillation_follows_its_teacher() -> None:
    torch.set_num_threads(2)
    train, val = _beats(480, 1), _beats(240, 2)
    student = dataclasses.replace(CONFIGS["tiny"], n_classes=3)
    # a small teacher keeps the test fast; the API is the one TEACHER_CONFIG goes through
    small = dataclasses.replace(teacher_config(student), channels=(16, 32, 32, 32), convs_per_block=1)
    cfg = DistillConfig(epochs=6, batch_size=32, lr=3e-3, seed=0, alpha=0.0)
    teacher = fit(small, train, val, cfg)
    assert teacher.val_macro_f1 > 0.8  # the toy task is learnable
    got = distill(teacher.model, student, train, val, dataclasses.replace(cfg, alpha=0.9), MemoryBudget())
    assert got.memory is not None and got.memory.total_bytes <= MemoryBudget().max_bytes
    assert got.params < teacher.params / 2
    assert len(got.history) == 6 and 1 <= got.best_epoch <= 6
    with torch.no_grad():
        x, rr = torch.from_numpy(val.windows), torch.from_numpy(val.rr)  # type: ignore[attr-defined]
        agree = (got.model(x, rr).argmax(1) == teacher.model(x, rr).argmax(1)).float().mean().item()
    assert got.val_macro_f1 > 0.6
    assert agree > 0.7  # measured 0.775 after 6 epochs (the student's own errors are the rest)
