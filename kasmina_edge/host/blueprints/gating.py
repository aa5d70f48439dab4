"""Multiplicative and gated blueprints: squeeze-excitation, GLU, attention filter, fail-safe gating."""

from __future__ import annotations

import torch
from torch import nn

from kasmina_edge.host.blueprints._parts import Bottleneck, check_positive, odd_kernel, pointwise, zero_
from kasmina_edge.host.blueprints.registry import register_blueprint


def _se_hidden(c: int, reduction: int) -> int:
    return max(1, c // reduction)


@register_blueprint(
    "squeeze_excitation",
    description="x · 2σ(W2·relu(W1·mean_L(x))): channel re-weighting from the window's summary.",
    param_count=lambda c, reduction: 2 * c * _se_hidden(c, reduction) + _se_hidden(c, reduction) + c,
    macs=lambda c, n, reduction: 2 * c * _se_hidden(c, reduction) + 2 * c * n,
    ops=("MEAN", "FULLY_CONNECTED", "RELU", "LOGISTIC", "MUL"),
    defaults={"reduction": 4},
)
class SqueezeExcitation(nn.Module):
    def __init__(self, channels: int, length: int | None = None, reduction: int = 4) -> None:
        super().__init__()
        check_positive("reduction", "squeeze_excitation", reduction)
        hidden = _se_hidden(channels, reduction)
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = zero_(nn.Linear(hidden, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.fc2(torch.relu(self.fc1(x.mean(dim=2))))
        # 2σ(0) == 1.0 exactly: the zero-initialised excitation leaves x untouched.
        return x * (2.0 * torch.sigmoid(s)).unsqueeze(2)


@register_blueprint(
    "glu",
    description="x + W_o·(W_a·x ⊙ σ(W_b·x)): a gated linear unit along channels.",
    param_count=lambda c, hidden: 2 * (c * hidden + hidden) + hidden * c + c,
    macs=lambda c, n, hidden: 3 * c * hidden * n + hidden * n,
    ops=("CONV_2D", "LOGISTIC", "MUL", "ADD"),
    defaults={"hidden": 8},
)
class GLU(nn.Module):
    def __init__(self, channels: int, length: int | None = None, hidden: int = 8) -> None:
        super().__init__()
        check_positive("hidden", "glu", hidden)
        self.value = pointwise(channels, hidden, bias=True)
        self.gate = pointwise(channels, hidden, bias=True)
        self.out = zero_(pointwise(hidden, channels, bias=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.out(self.value(x) * torch.sigmoid(self.gate(x)))


@register_blueprint(
    "attention_filter",
    description="x · 2σ(Conv_k(x)→1): a temporal attention mask shared by all channels.",
    param_count=lambda c, kernel_size: c * kernel_size + 1,
    macs=lambda c, n, kernel_size: c * kernel_size * n + c * n,
    ops=("CONV_2D", "LOGISTIC", "MUL"),
    defaults={"kernel_size": 7},
)
class AttentionFilter(nn.Module):
    def __init__(self, channels: int, length: int | None = None, kernel_size: int = 7) -> None:
        super().__init__()
        odd_kernel("attention_filter", kernel_size)
        self.score = zero_(nn.Conv1d(channels, 1, kernel_size, padding=kernel_size // 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (2.0 * torch.sigmoid(self.score(x)))


@register_blueprint(
    "failsafe_gating",
    description="x + σ(g)·delta(x) where delta is finite and the breaker is closed, else x (identity fallback).",
    param_count=lambda c, rank: 2 * c * rank + c,
    macs=lambda c, n, rank: 2 * c * rank * n + 2 * c * n,
    ops=("CONV_2D", "RELU", "LOGISTIC", "MUL", "ABS", "LESS", "EQUAL", "SELECT_V2", "ADD"),
    targets=("cortex-m", "linux-arm", "x86"),
    defaults={"rank": 4},
)
class FailsafeGating(nn.Module):
    def __init__(self, channels: int, length: int | None = None, rank: int = 4) -> None:
        super().__init__()
        check_positive("rank", "failsafe_gating", rank)
        self.inner = Bottleneck(channels, rank)
        self.gate_logit = nn.Parameter(torch.zeros(1, channels, 1))
        # Set by a health check (or the runtime's breaker): the seed then outputs x unchanged.
        self.register_buffer("tripped", torch.zeros((), dtype=torch.bool))

    def trip(self, value: bool = True) -> None:
        self.tripped.fill_(value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        delta = torch.sigmoid(self.gate_logit) * self.inner(x)
        # d == d is false for NaN, |d| < inf false for ±inf: both lower to plain compare ops.
        ok = (delta == delta) & (delta.abs() < float("inf")) & ~self.tripped
        return x + torch.where(ok, delta, torch.zeros_like(delta))
