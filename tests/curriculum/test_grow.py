"""The generic three-arm growth: task data checks and how fossilized seeds are combined."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.curriculum import grow
from kasmina_edge.curriculum.grow import ShiftTask, TaskData, combine_seeds

# Each sample's aux feature says whether it is shifted (1) or clean (0); its label is 1.
# A model predicts 1 on a shifted sample when its seeds' fixes sum to at least the sample's difficulty, and on a
# clean sample unless a seed that breaks clean data is in it.


class FakeModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fix: float = 0.0
        self.breaks_clean = False

    def forward(self, x: torch.Tensor, rr: torch.Tensor) -> torch.Tensor:
        difficulty = x[:, 0, 0]
        shifted = rr[:, 0] > 0
        ok = torch.where(shifted, difficulty <= self.fix, torch.tensor(not self.breaks_clean))
        return torch.stack([(~ok).float(), ok.float()], dim=1)


@dataclass
class FakeTrial:
    seed_id: str
    gain: float
    fix: float
    breaks_clean: bool = False


def _apply(model: FakeModel, trial: FakeTrial) -> FakeModel:
    out = copy.deepcopy(model)
    out.fix += trial.fix
    out.breaks_clean = out.breaks_clean or trial.breaks_clean
    return out


def _data(difficulty: np.ndarray, shifted: bool) -> TaskData:
    n = len(difficulty)
    windows = np.repeat(difficulty[:, None, None], 4, axis=2).astype(np.float32)
    return TaskData(windows, np.full((n, 1), float(shifted), np.float32), np.ones(n, np.int64))


@pytest.fixture()
def task(monkeypatch: pytest.MonkeyPatch) -> ShiftTask:
    import kasmina_edge.host.conditions_morph as cm

    monkeypatch.setattr(cm, "seeded_model", _apply)
    hard = np.linspace(0.05, 1.0, 20)
    clean, shifted = _data(hard, False), _data(hard, True)
    return ShiftTask("fake", 2, clean, clean, shifted, shifted, shifted, clean)


def test_seeds_are_kept_best_first_while_the_combination_improves(task: ShiftTask) -> None:
    a, b, c = FakeTrial("a", 0.3, 0.3), FakeTrial("b", 0.5, 0.5), FakeTrial("c", 0.1, 0.0)  # c adds nothing
    model, kept = combine_seeds(FakeModel(), [a, b, c], task, tolerance=0.05)  # type: ignore[arg-type]
    assert [t.seed_id for t in kept] == ["b", "a"]
    assert grow.accuracy(model, task.shift_val) == pytest.approx(16 / 20)


def test_a_seed_that_breaks_clean_data_is_left_out_of_the_combination(task: ShiftTask) -> None:
    good, harmful = FakeTrial("good", 0.2, 0.2), FakeTrial("harmful", 0.9, 0.9, breaks_clean=True)
    model, kept = combine_seeds(FakeModel(), [good, harmful], task, tolerance=0.05)  # type: ignore[arg-type]
    assert [t.seed_id for t in kept] == ["good"]
    assert grow.accuracy(model, task.val) == 1.0


def test_task_data_refuses_wrong_shapes() -> None:
    with pytest.raises(KasminaError, match="must be"):
        TaskData(np.zeros((3, 64), np.float32), np.zeros((3, 0), np.float32), np.zeros(3, np.int64))
