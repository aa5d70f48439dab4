"""The keep loss holds the base's answers on the beats it gets right, and only those."""

from __future__ import annotations

import torch

from kasmina_edge.host.patient_grow import keep_loss


def test_keep_loss_is_zero_where_the_seed_agrees_and_ignores_the_base_s_mistakes() -> None:
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(16, 5, generator=gen)
    right = torch.zeros(16, dtype=torch.bool)
    right[:8] = True
    assert float(keep_loss(base.clone(), base, right)) < 1e-6
    moved = base.clone()
    moved[8:] += 5 * torch.randn(8, 5, generator=gen)  # only beats the base got wrong change
    assert float(keep_loss(moved, base, right)) < 1e-6
    moved[:8] += 5 * torch.randn(8, 5, generator=gen)  # beats it got right change: penalised
    assert float(keep_loss(moved, base, right)) > 0.1
    none = torch.zeros(16, dtype=torch.bool)
    assert float(keep_loss(moved, base, none)) == 0.0
