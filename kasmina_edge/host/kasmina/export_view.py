"""A plain ``nn.Module`` equal to a KasminaLayer's current output, with no lifecycle machinery.

The build step exports this (torch.export, LiteRT, ONNX): the chunk bank becomes two dense 1x1
convolutions over the live chunks only (block-diagonal weights, alpha folded into the up
projection), and each live module seed runs on its channel range.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F


class SeedLayerView(nn.Module):
    def __init__(
        self,
        channels: int,
        bank_down: torch.Tensor | None,
        bank_up: torch.Tensor | None,
        modules: list[tuple[int, int, nn.Module, float]],
    ) -> None:
        super().__init__()
        self.channels = channels
        self.has_bank = bank_down is not None
        if bank_down is not None and bank_up is not None:
            self.bank_down = nn.Parameter(bank_down.detach().clone().unsqueeze(-1), requires_grad=False)
            self.bank_up = nn.Parameter(bank_up.detach().clone().unsqueeze(-1), requires_grad=False)
        self.seeds = nn.ModuleList([copy.deepcopy(m).eval() for _, _, m, _ in modules])
        self.ranges = [(a, b) for a, b, _, _ in modules]
        self.alphas = [float(al) for _, _, _, al in modules]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.has_bank:
            y = y + F.conv1d(torch.relu(F.conv1d(y, self.bank_down)), self.bank_up)
        for (a, b), seed, alpha in zip(self.ranges, self.seeds, self.alphas, strict=True):
            seg = y[:, a:b] if (a, b) != (0, self.channels) else y
            out = seed(seg) if alpha == 1.0 else seg + alpha * (seed(seg) - seg)
            y = out if (a, b) == (0, self.channels) else torch.cat([y[:, :a], out, y[:, b:]], dim=1)
        return y

    @property
    def is_identity(self) -> bool:
        return not self.has_bank and not self.ranges


def dense_bank(
    w_down: torch.Tensor, w_up: torch.Tensor, rows: torch.Tensor, alpha: torch.Tensor, channels: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Block-diagonal (K·r, C) down and (C, K·r) up weights for bank rows ``rows`` (alpha folded in)."""
    s, c, r = w_down.shape
    k = rows.numel()
    cols = (rows.view(-1, 1) * c + torch.arange(c).view(1, -1)).reshape(-1)  # channels of those chunks
    down = torch.zeros(k * r, channels, dtype=w_down.dtype)
    up = torch.zeros(channels, k * r, dtype=w_up.dtype)
    down[:, cols] = torch.block_diag(*[w_down[i].T for i in rows.tolist()])
    scaled = w_up[rows] * alpha[rows].view(-1, 1, 1).to(w_up.dtype)  # (K, r, c)
    up[cols, :] = torch.block_diag(*[scaled[j].T for j in range(k)])
    return down, up
