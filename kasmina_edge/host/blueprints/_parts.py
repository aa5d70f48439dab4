"""Small building blocks shared by blueprints: pointwise convs and zero-initialised output paths."""

from __future__ import annotations

import torch
from torch import nn


def pointwise(c_in: int, c_out: int, *, bias: bool) -> nn.Conv1d:
    """A 1x1 Conv1d: on (B, C, L) it is a per-position fully connected layer (lowers to CONV_2D)."""
    return nn.Conv1d(c_in, c_out, kernel_size=1, bias=bias)


def zero_(module: nn.Module) -> nn.Module:
    """Zero a module's weights and biases: the output path of a function-preserving blueprint."""
    with torch.no_grad():
        for p in module.parameters():
            p.zero_()
    return module


class Bottleneck(nn.Module):
    """delta(x) = W_up · relu(W_down · x), bias-free, W_up zero: the chunk kernel's adapter."""

    def __init__(self, channels: int, rank: int) -> None:
        super().__init__()
        self.down = pointwise(channels, rank, bias=False)
        self.up = zero_(pointwise(rank, channels, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(torch.relu(self.down(x)))


def check_positive(name: str, blueprint: str, value: int) -> None:
    from kasmina_edge.host.blueprints.registry import BlueprintParamError

    if int(value) < 1:
        raise BlueprintParamError(f"blueprint {blueprint!r}: {name} must be >= 1, got {value}")


def odd_kernel(blueprint: str, k: int) -> None:
    from kasmina_edge.host.blueprints.registry import BlueprintParamError

    check_positive("kernel_size", blueprint, k)
    if k % 2 == 0:
        # 'same' padding of an even kernel is asymmetric and would shift the signal.
        raise BlueprintParamError(f"blueprint {blueprint!r}: kernel_size must be odd, got {k}")
