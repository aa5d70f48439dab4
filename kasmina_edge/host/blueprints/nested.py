"""Nested seed: a seed holding child seeds, each with its own alpha, recursively (default 3 levels)."""

from __future__ import annotations

import torch
from torch import nn

from kasmina_edge.host.blueprints._parts import Bottleneck, check_positive
from kasmina_edge.host.blueprints.registry import register_blueprint


def _nested_params(c: int, depth: int, fanout: int, rank: int) -> int:
    own = 2 * c * rank
    return own + (fanout * _nested_params(c, depth - 1, fanout, rank) if depth > 1 else 0)


def _nested_macs(c: int, n: int, depth: int, fanout: int, rank: int) -> int:
    own = 2 * c * rank * n
    return own + (fanout * _nested_macs(c, n, depth - 1, fanout, rank) if depth > 1 else 0)


@register_blueprint(
    "nested_seed",
    description="A bottleneck seed that first runs `fanout` child seeds (each blended by its own alpha), depth levels.",
    param_count=_nested_params,
    macs=_nested_macs,
    ops=("CONV_2D", "RELU", "MUL", "SUB", "ADD"),
    defaults={"depth": 3, "fanout": 2, "rank": 2},
)
class NestedSeed(nn.Module):
    def __init__(
        self, channels: int, length: int | None = None, depth: int = 3, fanout: int = 2, rank: int = 2
    ) -> None:
        super().__init__()
        for name, v in (("depth", depth), ("fanout", fanout), ("rank", rank)):
            check_positive(name, "nested_seed", v)
        self.depth = depth
        self.own = Bottleneck(channels, rank)
        self.children_seeds = nn.ModuleList(
            [NestedSeed(channels, length, depth - 1, fanout, rank) for _ in range(fanout if depth > 1 else 0)]
        )
        # One alpha per child: a parent can blend its children in (or out) one at a time.
        self.register_buffer("child_alpha", torch.ones(len(self.children_seeds)))

    def levels(self) -> int:
        """How many levels deep this seed goes (itself included)."""
        return 1 + max((int(c.levels()) for c in self.children_seeds), default=0)  # type: ignore[operator]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        for i, child in enumerate(self.children_seeds):
            y = y + self.child_alpha[i] * (child(y) - y)
        return y + self.own(y)
