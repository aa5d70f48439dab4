"""Residual adapters along the channel axis: no-op, bottleneck, low-rank, residual MLP, latent align."""

from __future__ import annotations

import torch
from torch import nn

from kasmina_edge.host.blueprints._parts import Bottleneck, check_positive, pointwise, zero_
from kasmina_edge.host.blueprints.registry import register_blueprint


@register_blueprint(
    "noop",
    description="Identity: reserves a site without computing anything (also the security fallback).",
    param_count=lambda c: 0,
    macs=lambda c, n: 0,
    ops=(),
)
class NoOp(nn.Module):
    def __init__(self, channels: int, length: int | None = None) -> None:
        super().__init__()
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@register_blueprint(
    "bottleneck_adapter",
    description="x + W_up·relu(W_down·x) per position, rank r, bias-free; the chunk kernel's adapter.",
    param_count=lambda c, rank: 2 * c * rank,
    macs=lambda c, n, rank: 2 * c * rank * n,
    ops=("CONV_2D", "RELU", "ADD"),
    defaults={"rank": 4},
    chunk_kernel=True,
)
class BottleneckAdapter(nn.Module):
    def __init__(self, channels: int, length: int | None = None, rank: int = 4) -> None:
        super().__init__()
        check_positive("rank", "bottleneck_adapter", rank)
        self.block = Bottleneck(channels, rank)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


@register_blueprint(
    "low_rank_residual",
    description="x + U·(V·x) + b: a linear low-rank correction of the channel mix.",
    param_count=lambda c, rank: 2 * c * rank + c,
    macs=lambda c, n, rank: 2 * c * rank * n,
    ops=("CONV_2D", "ADD"),
    defaults={"rank": 2},
)
class LowRankResidual(nn.Module):
    def __init__(self, channels: int, length: int | None = None, rank: int = 2) -> None:
        super().__init__()
        check_positive("rank", "low_rank_residual", rank)
        self.v = pointwise(channels, rank, bias=False)
        self.u = zero_(pointwise(rank, channels, bias=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.u(self.v(x))


@register_blueprint(
    "residual_mlp",
    description="x + W2·relu(W1·x + b1) + b2 with an expanded hidden width (expansion × C).",
    param_count=lambda c, expansion: 2 * c * (expansion * c) + expansion * c + c,
    macs=lambda c, n, expansion: 2 * c * (expansion * c) * n,
    ops=("CONV_2D", "RELU", "ADD"),
    defaults={"expansion": 2},
)
class ResidualMLP(nn.Module):
    def __init__(self, channels: int, length: int | None = None, expansion: int = 2) -> None:
        super().__init__()
        check_positive("expansion", "residual_mlp", expansion)
        hidden = expansion * channels
        self.fc1 = pointwise(channels, hidden, bias=True)
        self.fc2 = zero_(pointwise(hidden, channels, bias=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(torch.relu(self.fc1(x)))


@register_blueprint(
    "latent_align",
    description="x·(1+γ) + β per channel: re-aligns shifted feature statistics (gain/offset drift).",
    param_count=lambda c: 2 * c,
    macs=lambda c, n: c * n,
    ops=("MUL", "ADD"),
)
class LatentAlign(nn.Module):
    def __init__(self, channels: int, length: int | None = None) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, channels, 1))
        self.beta = nn.Parameter(torch.zeros(1, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x + (x·γ + β) rather than x·(1+γ): exact identity at γ=β=0 for every x.
        return x + (x * self.gamma + self.beta)
