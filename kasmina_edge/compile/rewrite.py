"""Export-friendly rewrites of host modules, each checked to compute the same function.

The host head standardises the RR features, ``(rr - mean) / std``, before its first linear layer.
A division has no int8 kernel in the PT2E flow (it would leave float ops and float inputs in the
TFLite), and it is affine, so it folds into ``fc1``. The global mean over time becomes an adaptive
average pool, which the quantizer knows: with ``fc1.weight = [W_a | W_r]``,
``W_r (rr - m) / s + b = (W_r / s) rr + (b - W_r m / s)``.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from kasmina_edge.compile.errors import BuildError

if TYPE_CHECKING:
    import torch
    from torch import nn

FOLD_TOLERANCE = 1e-4


def has_rr_normalisation(module: nn.Module) -> bool:
    return all(hasattr(module, a) for a in ("rr_mean", "rr_std", "fc1", "fc2"))


def fold_rr_normalisation(head: Any) -> nn.Module:
    """A head without the RR standardisation, folded into ``fc1`` (same outputs within float error)."""
    import torch
    from torch.nn import functional as F

    fc1 = copy.deepcopy(head.fc1)
    fc2 = copy.deepcopy(head.fc2)
    mean = head.rr_mean.detach().clone()
    std = head.rr_std.detach().clone()
    n_rr = mean.numel()
    with torch.no_grad():
        w_r = fc1.weight[:, -n_rr:] / std
        fc1.bias.add_(-(w_r * mean).sum(dim=1))
        fc1.weight[:, -n_rr:] = w_r

    class FoldedHead(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1 = fc1
            self.fc2 = fc2

        def forward(self, act: torch.Tensor, rr: torch.Tensor) -> torch.Tensor:
            # the global mean as an adaptive average pool: the PT2E quantizer annotates that op (it
            # leaves a bare ``mean`` in float, and with it the segment's input)
            pooled = F.adaptive_avg_pool2d(act.unsqueeze(2), 1).flatten(1)
            out: torch.Tensor = self.fc2(F.relu(self.fc1(torch.cat([pooled, rr], dim=1))))
            return out

    return FoldedHead().eval()


def check_equivalent(a: nn.Module, b: nn.Module, *example: torch.Tensor, what: str) -> None:
    """Raise unless ``a`` and ``b`` agree on ``example`` (guards every rewrite against host changes)."""
    import torch

    with torch.no_grad():
        ya, yb = a(*example), b(*example)
    err = float((ya - yb).abs().max())
    scale = float(ya.abs().max()) or 1.0
    if err > FOLD_TOLERANCE * max(1.0, scale):
        raise BuildError(
            f"{what}: export rewrite changed the output by {err:.2e} (limit {FOLD_TOLERANCE:.0e})"
        )
