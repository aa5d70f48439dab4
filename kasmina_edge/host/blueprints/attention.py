"""Mini self-attention over time: a seed that can relate distant parts of the beat window."""

from __future__ import annotations

import math

import torch
from torch import nn

from kasmina_edge.host.blueprints._parts import check_positive, pointwise, zero_
from kasmina_edge.host.blueprints.registry import register_blueprint


def _params(c: int, heads: int, head_dim: int) -> int:
    inner = heads * head_dim
    return 3 * c * inner + inner * c + c


def _macs(c: int, n: int, heads: int, head_dim: int) -> int:
    inner = heads * head_dim
    return 3 * c * inner * n + 2 * heads * n * n * head_dim + inner * c * n


@register_blueprint(
    "mini_attention",
    description="x + W_o·softmax(QKᵀ/√d)·V over the L positions; H heads of width d.",
    param_count=_params,
    macs=_macs,
    ops=("CONV_2D", "RESHAPE", "TRANSPOSE", "BATCH_MATMUL", "MUL", "SOFTMAX", "ADD"),
    # BATCH_MATMUL and 4-D (B, H, L, L) tensors are outside the Edge TPU's op set.
    targets=("cortex-m", "linux-arm", "x86"),
    defaults={"heads": 1, "head_dim": 8},
)
class MiniAttention(nn.Module):
    def __init__(self, channels: int, length: int | None = None, heads: int = 1, head_dim: int = 8) -> None:
        super().__init__()
        check_positive("heads", "mini_attention", heads)
        check_positive("head_dim", "mini_attention", head_dim)
        self.heads, self.head_dim = heads, head_dim
        self.qkv = pointwise(channels, 3 * heads * head_dim, bias=False)
        self.out = zero_(pointwise(heads * head_dim, channels, bias=True))
        self.scale = 1.0 / math.sqrt(head_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _c, n = x.shape
        q, k, v = self.qkv(x).reshape(b, 3, self.heads, self.head_dim, n).unbind(1)
        att = torch.softmax(q.transpose(2, 3) @ k * self.scale, dim=-1)  # (B, H, L, L)
        y = (att @ v.transpose(2, 3)).transpose(2, 3).reshape(b, self.heads * self.head_dim, n)
        return x + self.out(y)
