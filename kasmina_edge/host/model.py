"""The base ECG beat classifier: a small 1-D CNN with seed sites between its blocks.

Input: a beat window (B, 1, 256) and its RR features (B, 4). The RR features enter only at
the classifier head, so the network splits cleanly at its seed sites into segments
(segment 0 takes the window, each middle segment takes the previous site's activation,
the last segment takes (activation, rr)): the ahead-of-time build exports each segment and
each seed kernel on its own and chains them on the device.

Deliberately absent: BatchNorm (litert-torch 0.10 converts it into extra TRANSPOSE/MUL/ADD ops instead of
folding it into the convolution) and MaxPool1d (litert-torch's PT2E quantizer shares scales across
``max_pool2d`` only, and refuses a MaxPool1d: "quantization parameters violate the same scale constraint"). Down-sampling is done by strided convolutions,
pooling by a global mean.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.ecg.types import AAMI_CLASSES

WINDOW = 256
N_RR = 4

# (channels, chunks, site index, activation length) -> the module at that seed site
SiteFactory = Callable[[int, int, int, int], nn.Module]


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the base network. ``channels[i]`` is the width of block i (and of seed site i)."""

    name: str = "default"
    channels: tuple[int, ...] = (16, 32, 32, 48)
    kernels: tuple[int, ...] = (7, 5, 5, 3)
    convs_per_block: int = 2  # the first conv of a block has stride 2, the others stride 1
    head_hidden: int = 32
    chunks: tuple[int, ...] = (4, 4, 4, 4)  # logical seeds per site (1 = one seed for the whole layer)
    window: int = WINDOW
    n_rr: int = N_RR
    n_classes: int = len(AAMI_CLASSES)

    def __post_init__(self) -> None:
        n = len(self.channels)
        if n < 4:
            raise KasminaError(f"model config {self.name!r}: needs at least 4 blocks (seed sites), got {n}")
        if len(self.kernels) != n or len(self.chunks) != n:
            raise KasminaError(f"model config {self.name!r}: channels, kernels and chunks must have one entry per block")
        for c, k in zip(self.channels, self.chunks, strict=True):
            if c % k:
                raise KasminaError(f"model config {self.name!r}: {c} channels do not split into {k} chunks")
        if self.window % (2**n):
            raise KasminaError(f"model config {self.name!r}: window {self.window} not divisible by 2^{n}")

    @property
    def site_names(self) -> list[str]:
        return [f"site{i}" for i in range(len(self.channels))]

    def site_shapes(self) -> dict[str, tuple[int, int]]:
        """(channels, length) of the activation at each seed site."""
        return {f"site{i}": (c, self.window // 2 ** (i + 1)) for i, c in enumerate(self.channels)}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise KasminaError(f"model config: unknown field(s) {', '.join(sorted(unknown))}")
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**kw)


CONFIGS: dict[str, ModelConfig] = {
    "default": ModelConfig(),
    # The demo's: trains in seconds, still four sites.
    "tiny": ModelConfig(
        name="tiny", channels=(8, 16, 16, 24), kernels=(7, 5, 5, 3), convs_per_block=1, head_hidden=16,
        chunks=(2, 4, 4, 4),
    ),
}


def get_config(name: str) -> ModelConfig:
    if name not in CONFIGS:
        raise KasminaError(f"unknown model config {name!r}; choose one of: {', '.join(CONFIGS)}")
    return CONFIGS[name]


def default_site_factory(channels: int, chunks: int, site: int, length: int) -> nn.Module:
    from kasmina_edge.host.kasmina import KasminaLayer

    return KasminaLayer(channels, chunks, site, length=length)


class ConvBlock(nn.Module):
    """Strided conv + ReLU, then (convs_per_block − 1) same-length convs + ReLU."""

    def __init__(self, c_in: int, c_out: int, kernel: int, n_convs: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv1d(c_in, c_out, kernel, stride=2, padding=kernel // 2), nn.ReLU()]
        for _ in range(n_convs - 1):
            layers += [nn.Conv1d(c_out, c_out, kernel, padding=kernel // 2), nn.ReLU()]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)  # type: ignore[no-any-return]


class Head(nn.Module):
    """Global mean over time, RR features appended, two linear layers to the class logits."""

    def __init__(self, c_in: int, n_rr: int, hidden: int, n_classes: int) -> None:
        super().__init__()
        # RR features arrive in seconds (and a ratio); standardised with the training set's
        # statistics (set once by training, saved with the weights, foldable into fc1 at export).
        self.register_buffer("rr_mean", torch.zeros(n_rr))
        self.register_buffer("rr_std", torch.ones(n_rr))
        self.fc1 = nn.Linear(c_in + n_rr, hidden)
        self.fc2 = nn.Linear(hidden, n_classes)

    def forward(self, act: torch.Tensor, rr: torch.Tensor) -> torch.Tensor:
        pooled = act.mean(dim=2)
        rr_n = (rr - self.rr_mean) / self.rr_std
        return self.fc2(torch.relu(self.fc1(torch.cat([pooled, rr_n], dim=1))))  # type: ignore[no-any-return]

    @torch.no_grad()
    def set_rr_stats(self, rr: torch.Tensor) -> None:
        self.rr_mean.copy_(rr.mean(dim=0))
        self.rr_std.copy_(rr.std(dim=0).clamp_min(1e-3))


@dataclass(frozen=True)
class Segment:
    """One piece of the split network, as the build step exports it.

    ``inputs`` are (name, shape without batch); ``site_after`` is the seed site that follows
    this segment (None for the last one).
    """

    index: int
    name: str
    module: nn.Module
    inputs: tuple[tuple[str, tuple[int, ...]], ...]
    output: tuple[int, ...]
    site_after: str | None = field(default=None)


class BeatClassifier(nn.Module):
    """blocks[0] → site0 → blocks[1] → site1 → … → site{n-1} → head(·, rr)."""

    def __init__(self, config: ModelConfig | None = None, site_factory: SiteFactory | None = None) -> None:
        super().__init__()
        self.config = config or ModelConfig()
        make_site = site_factory or default_site_factory
        cfg = self.config
        widths = (1, *cfg.channels)
        self.blocks = nn.ModuleList(
            ConvBlock(widths[i], widths[i + 1], cfg.kernels[i], cfg.convs_per_block) for i in range(len(cfg.channels))
        )
        shapes = cfg.site_shapes()
        self.sites = nn.ModuleDict(
            {
                name: make_site(c, k, i, shapes[name][1])
                for i, (name, c, k) in enumerate(zip(cfg.site_names, cfg.channels, cfg.chunks, strict=True))
            }
        )
        self.head = Head(cfg.channels[-1], cfg.n_rr, cfg.head_hidden, cfg.n_classes)

    def forward(self, x: torch.Tensor, rr: torch.Tensor) -> torch.Tensor:
        h = x
        for block, site in zip(self.blocks, self.sites.values(), strict=True):
            h = site(block(h))
        return self.head(h, rr)  # type: ignore[no-any-return]

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Activations after each site (what per-site drift telemetry is computed from)."""
        out: dict[str, torch.Tensor] = {}
        h = x
        for (name, site), block in zip(self.sites.items(), self.blocks, strict=True):
            h = site(block(h))
            out[name] = h
        return out

    def downstream(self, site: str, act: torch.Tensor, rr: torch.Tensor) -> torch.Tensor:
        """The network from just after ``site`` to the logits (what a seed's loss is computed through)."""
        names = list(self.sites)
        k = names.index(site)
        h = act
        for name, block in zip(names[k + 1 :], list(self.blocks)[k + 1 :], strict=True):
            h = self.sites[name](block(h))
        return self.head(h, rr)  # type: ignore[no-any-return]

    def host_parameters(self) -> list[nn.Parameter]:
        """The base network's own weights (blocks and head), never a seed's."""
        return [*self.blocks.parameters(), *self.head.parameters()]

    def segments(self) -> list[Segment]:
        """The split points for the ahead-of-time build: one segment per block, then the head."""
        cfg = self.config
        shapes = cfg.site_shapes()
        names = cfg.site_names
        segs: list[Segment] = []
        prev: tuple[str, tuple[int, ...]] = ("window", (1, cfg.window))
        for i, (block, name) in enumerate(zip(self.blocks, names, strict=True)):
            segs.append(Segment(i, f"block{i}", block, (prev,), shapes[name], site_after=name))
            prev = (name, shapes[name])
        segs.append(Segment(len(names), "head", self.head, (prev, ("rr", (cfg.n_rr,))), (cfg.n_classes,)))
        return segs


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def count_host_parameters(model: BeatClassifier) -> int:
    return sum(p.numel() for p in model.host_parameters())


def count_macs(model: nn.Module, *example: torch.Tensor) -> int:
    """Multiply-accumulates of one forward pass per sample, counted by hooks on Conv1d and Linear."""
    total = 0

    def conv_hook(mod: nn.Module, _inp: Any, out: torch.Tensor) -> None:
        nonlocal total
        assert isinstance(mod, nn.Conv1d)
        per_out = (mod.in_channels // mod.groups) * mod.kernel_size[0]
        total += int(out[0].numel()) * per_out

    def linear_hook(mod: nn.Module, _inp: Any, out: torch.Tensor) -> None:
        nonlocal total
        assert isinstance(mod, nn.Linear)
        total += int(out[0].numel()) * mod.in_features

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv1d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    try:
        with torch.no_grad():
            model(*(t[:1] for t in example))
    finally:
        for h in handles:
            h.remove()
    return total


def example_inputs(config: ModelConfig, batch: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return (
        torch.randn(batch, 1, config.window, generator=g),
        torch.rand(batch, config.n_rr, generator=g),
    )


def build_model(config: ModelConfig | str = "default", *, seed: int = 0, site_factory: SiteFactory | None = None) -> BeatClassifier:
    cfg = get_config(config) if isinstance(config, str) else config
    torch.manual_seed(seed)
    return BeatClassifier(cfg, site_factory=site_factory)
