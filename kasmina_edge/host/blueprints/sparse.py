"""Sparse blueprints: top-k activation and a magnitude-pruned adapter."""

from __future__ import annotations

import torch
from torch import nn

from kasmina_edge.host.blueprints._parts import Bottleneck, check_positive
from kasmina_edge.host.blueprints.registry import BlueprintParamError, register_blueprint


@register_blueprint(
    "sparse_topk",
    description="x + W_up·topk_k(relu(W_down·x)): only the k strongest hidden units fire per position.",
    param_count=lambda c, hidden, k: 2 * c * hidden,
    macs=lambda c, n, hidden, k: 2 * c * hidden * n + hidden * n,
    ops=("CONV_2D", "RELU", "TOPK_V2", "GREATER_EQUAL", "MUL", "ADD"),
    # TOPK_V2 is neither an Edge TPU op nor in TFLite Micro's resolver.
    targets=("linux-arm", "x86"),
    defaults={"hidden": 16, "k": 4},
)
class SparseTopK(nn.Module):
    def __init__(self, channels: int, length: int | None = None, hidden: int = 16, k: int = 4) -> None:
        super().__init__()
        check_positive("hidden", "sparse_topk", hidden)
        check_positive("k", "sparse_topk", k)
        if k > hidden:
            raise BlueprintParamError(f"blueprint 'sparse_topk': k={k} exceeds hidden={hidden}")
        self.k = k
        self.block = Bottleneck(channels, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.block.down(x))
        kth = torch.topk(h, self.k, dim=1).values[:, -1:, :]
        return x + self.block.up(h * (h >= kth).to(h.dtype))


@register_blueprint(
    "pruning_adapter",
    description="Bottleneck adapter whose weights pass through magnitude masks (prune() re-derives them).",
    param_count=lambda c, rank, sparsity: 2 * c * rank,
    macs=lambda c, n, rank, sparsity: 2 * c * rank * n,
    ops=("CONV_2D", "RELU", "ADD"),
    defaults={"rank": 8, "sparsity": 0.5},
)
class PruningAdapter(nn.Module):
    def __init__(self, channels: int, length: int | None = None, rank: int = 8, sparsity: float = 0.5) -> None:
        super().__init__()
        check_positive("rank", "pruning_adapter", rank)
        if not 0.0 <= sparsity < 1.0:
            raise BlueprintParamError(f"blueprint 'pruning_adapter': sparsity must be in [0, 1), got {sparsity}")
        self.sparsity = float(sparsity)
        self.block = Bottleneck(channels, rank)
        # Masks start full: pruning an all-zero output path at init would be arbitrary.
        self.register_buffer("mask_down", torch.ones_like(self.block.down.weight))
        self.register_buffer("mask_up", torch.ones_like(self.block.up.weight))

    @torch.no_grad()
    def prune(self, sparsity: float | None = None) -> None:
        """Keep the largest-magnitude (1 - sparsity) fraction of each weight; mask the rest."""
        s = self.sparsity if sparsity is None else float(sparsity)
        for weight, mask in ((self.block.down.weight, self.mask_down), (self.block.up.weight, self.mask_up)):
            n_drop = int(round(s * weight.numel()))
            mask.fill_(1.0)
            if n_drop > 0:
                drop = torch.topk(weight.abs().flatten(), n_drop, largest=False).indices
                mask.view(-1)[drop] = 0.0

    def nonzero_param_count(self) -> int:
        return int(self.mask_down.sum().item() + self.mask_up.sum().item())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w_down = self.block.down.weight * self.mask_down
        w_up = self.block.up.weight * self.mask_up
        return x + torch.nn.functional.conv1d(torch.relu(torch.nn.functional.conv1d(x, w_down)), w_up)
