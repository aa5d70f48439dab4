"""A stand-in segmented 1-D CNN with the host model's shape conventions (tests only).

Windows (B, 1, 256) go through four conv blocks with a seed site after each; the head takes the last
activation and the RR features (B, 4). Seed kernels are residual adapters at a site.
"""

from __future__ import annotations

import torch
from torch import nn

from kasmina_edge.compile.split import SeedKernel, SegmentedModel, Site


class Block(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv1d(cin, cout, 5, padding=2, bias=False), nn.BatchNorm1d(cout), nn.ReLU(), nn.AvgPool1d(2)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Head(nn.Module):
    def __init__(self, cin: int, classes: int = 5, rr: int = 4) -> None:
        super().__init__()
        self.block = Block(cin, cin)
        self.fc = nn.Linear(cin + rr, classes)

    def forward(self, h: torch.Tensor, rr: torch.Tensor) -> torch.Tensor:
        z = self.block(h).mean(dim=2)
        return self.fc(torch.cat([z, rr], dim=1))


class Bottleneck(nn.Module):
    """h + up(relu(down(h))): the residual adapter blueprint."""

    def __init__(self, c: int, r: int = 4) -> None:
        super().__init__()
        self.down = nn.Conv1d(c, r, 1)
        self.up = nn.Conv1d(r, c, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.up(torch.relu(self.down(h)))


class DepthwiseAdapter(nn.Module):
    """h + pw(relu(dw(h))): a depthwise-separable residual blueprint."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.dw = nn.Conv1d(c, c, 3, padding=1, groups=c)
        self.pw = nn.Conv1d(c, c, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.pw(torch.relu(self.dw(h)))


class StandIn(nn.Module):
    CHANNELS = (8, 16, 16, 32)

    def __init__(self) -> None:
        super().__init__()
        c = self.CHANNELS
        self.blocks = nn.ModuleList([Block(1, c[0]), Block(c[0], c[1]), Block(c[1], c[2]), Block(c[2], c[3])])
        self.head = Head(c[3])
        self.adapters = nn.ModuleDict()  # site index (str) -> kernel, trained with the base for tests

    def forward(self, x: torch.Tensor, rr: torch.Tensor) -> torch.Tensor:
        h = x
        for i, b in enumerate(self.blocks):
            h = b(h)
            if str(i) in self.adapters:
                h = self.adapters[str(i)](h)
        return self.head(h, rr)


def segmented(
    model: StandIn, kernels: dict[int, list[tuple[str, str, nn.Module]]] | None = None
) -> SegmentedModel:
    c = StandIn.CHANNELS
    lengths = (128, 64, 32, 16)
    sites = [Site(i, f"block{i}", c[i], lengths[i]) for i in range(4)]
    segs: list[nn.Module] = [model.blocks[0], model.blocks[1], model.blocks[2], model.blocks[3], model.head]
    ks = [SeedKernel(sid, site, bp, mod) for site, lst in (kernels or {}).items() for sid, bp, mod in lst]
    return SegmentedModel(segs, sites, ks)
