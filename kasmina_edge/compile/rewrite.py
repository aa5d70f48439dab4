"""Export-friendly rewrites of host modules, each checked to compute the same function.

The host head is ``fc2(relu(fc1(cat[mean_t(act), (rr - mean) / std])))``. Written that way, int8
loses ~1 % of argmax decisions on the default model, for three reasons measured one by one:

* the RR standardisation (a subtraction and a division by buffers) has no int8 kernel in the PT2E
  flow: it stays float, and so does the segment's input;
* the global mean and the concatenation *share* their input's int8 grid in the quantizer: the
  pooled activations (small) land on the grid of the site activation (heavy-tailed, up to 40) and
  on the grid of the RR features, with a few dozen levels left;
* folding the standardisation into ``fc1`` is exact in float, but its RR columns then grow by 1/std
  and share each output channel's weight scale with the activation columns (3–4 bits left).

So: the mean over time is a depthwise convolution with weights 1/L (its own output grid), ``fc1``
is split into an activation part and an RR part added together (each with its own weight scales
and output grid), and the standardisation folds into the RR part alone, where it costs nothing.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from kasmina_edge.core.build_errors import BuildError

if TYPE_CHECKING:
    import torch
    from torch import nn

FOLD_TOLERANCE = 1e-4


def has_rr_normalisation(module: nn.Module) -> bool:
    return all(hasattr(module, a) for a in ("rr_mean", "rr_std", "fc1", "fc2"))


def fold_rr_normalisation(head: Any, length: int) -> nn.Module:
    """The head as quantization-friendly layers (same outputs within float error).

    ``length`` is the time length of the activation the head pools over.
    """
    import torch
    from torch.nn import functional as F

    fc1, fc2 = head.fc1, head.fc2
    mean = head.rr_mean.detach().clone()
    std = head.rr_std.detach().clone()
    n_rr = mean.numel()
    channels = fc1.in_features - n_rr
    pool = torch.nn.Conv1d(channels, channels, length, groups=channels, bias=False)
    fc1_act = torch.nn.Linear(channels, fc1.out_features, bias=False)
    fc1_rr = torch.nn.Linear(n_rr, fc1.out_features)
    with torch.no_grad():
        pool.weight.fill_(1.0 / length)
        fc1_act.weight.copy_(fc1.weight[:, :channels])
        w_rr = fc1.weight[:, channels:] / std
        fc1_rr.weight.copy_(w_rr)
        fc1_rr.bias.copy_(fc1.bias - (w_rr * mean).sum(dim=1))
    fc2_copy = copy.deepcopy(fc2)

    class ExportHead(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pool = pool
            self.fc1_act = fc1_act
            self.fc1_rr = fc1_rr
            self.fc2 = fc2_copy

        def forward(self, act: torch.Tensor, rr: torch.Tensor) -> torch.Tensor:
            pooled = self.pool(act).flatten(1)
            out: torch.Tensor = self.fc2(F.relu(self.fc1_act(pooled) + self.fc1_rr(rr)))
            return out

    return ExportHead().eval()


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
