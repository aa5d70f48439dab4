"""Nested seed: a seed holding child seeds, each with its own alpha, recursively (default 3 levels).

Each child is a node of the same class; ``host.nesting`` gives every child its own seed id and lifecycle and
drives ``child_alpha`` / ``child_live`` through :meth:`NestedSeed.set_child`. A child that is not live is
skipped in the forward (its parameters cost no MACs and get no gradient).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

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
    child_alpha: torch.Tensor
    own: Bottleneck

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
        # Python-side, so the forward decides what to run without reading a tensor (and export folds it).
        self.child_live: list[bool] = [True] * len(self.children_seeds)

    def set_child(self, index: int, alpha: float, live: bool) -> None:
        """Blend child ``index`` in at ``alpha``; a child that is not live is skipped entirely."""
        with torch.no_grad():
            self.child_alpha[index] = float(alpha)
        self.child_live[index] = bool(live)

    def own_parameters(self) -> list[nn.Parameter]:
        """This node's own parameters (its bottleneck), not its children's."""
        return list(self.own.parameters())

    @torch.no_grad()
    def reset_own(self) -> None:
        """Back to function-preserving: the output path zero, the input path re-drawn."""
        nn.init.normal_(self.own.down.weight, std=1.0 / math.sqrt(self.own.down.weight.shape[1]))
        for p in self.own.up.parameters():
            p.zero_()

    def descendants(self, prefix: tuple[int, ...] = ()) -> Iterator[tuple[tuple[int, ...], NestedSeed, NestedSeed]]:
        """(index path, holder, child) for every descendant, parents before their children."""
        for i, child in enumerate(self.children_seeds):
            assert isinstance(child, NestedSeed)
            yield (*prefix, i), self, child
            yield from child.descendants((*prefix, i))

    def levels(self) -> int:
        """How many levels deep this seed goes (itself included)."""
        return 1 + max((int(c.levels()) for c in self.children_seeds), default=0)  # type: ignore[operator]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        for i, child in enumerate(self.children_seeds):
            if self.child_live[i]:
                y = y + self.child_alpha[i] * (child(y) - y)
        return y + self.own(y)
