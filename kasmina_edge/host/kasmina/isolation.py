"""Gradient isolation between a host and its seeds.

The KasminaLayer feeds seeds ``host.detach()`` and, during TRAINING, returns the host tensor
itself, so the host's forward is untouched bit for bit. This module *measures* that it holds:
parameters shared between seed and host, host gradients produced by a seed's loss, and seed
gradients produced by the host's loss are violations; they are counted, fail G1, and trip a
circuit breaker after ``breaker_threshold`` of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from kasmina_edge.host.kasmina.registry import overlapping


def bit_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal bit for bit (NaN payloads and signed zeros included), unlike ``torch.equal``."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    return bool(torch.equal(a.contiguous().view(torch.uint8), b.contiguous().view(torch.uint8)))


class IsolationMonitor:
    def __init__(
        self,
        seed_params: Iterable[nn.Parameter],
        host_params: Iterable[nn.Parameter],
        *,
        breaker_threshold: int = 1,
    ) -> None:
        self.seed_params = [p for p in seed_params]
        self.host_params = [p for p in host_params]
        self.breaker_threshold = breaker_threshold
        self.violations = 0
        self.reasons: list[str] = []
        self.host_grad_from_seed = 0.0  # largest |grad| a host parameter got from a seed loss
        self.seed_grad_from_host = 0.0  # largest |grad| a seed parameter got from the host loss
        self.seed_grad_norms: list[float] = []
        self._known_shared: set[int] = set()
        self.rescan()

    def rescan(
        self, seed_params: Iterable[nn.Parameter] | None = None, host_params: Iterable[nn.Parameter] | None = None
    ) -> int:
        """(Re)check for parameters shared between seed and host; each newly found one is a violation."""
        if seed_params is not None:
            self.seed_params = list(seed_params)
        if host_params is not None:
            self.host_params = list(host_params)
        new = [
            s for s in self.seed_params
            if id(s) not in self._known_shared and any(overlapping(s, h) for h in self.host_params)
        ]  # fmt: skip
        for s in new:
            self._known_shared.add(id(s))
            self.record(f"parameter {tuple(s.shape)} shared between seed and host")
        return len(new)

    @property
    def tripped(self) -> bool:
        return self.violations >= self.breaker_threshold

    @property
    def holds(self) -> bool:
        return self.violations == 0

    def record(self, reason: str) -> None:
        self.violations += 1
        self.reasons.append(reason)

    @contextmanager
    def _watch(self, params: list[nn.Parameter], label: str) -> Iterator[list[float]]:
        seen: list[float] = []

        def hook(g: torch.Tensor) -> None:
            seen.append(float(g.detach().abs().max()) if g.numel() else 0.0)

        handles = [p.register_hook(hook) for p in params if p.requires_grad]
        try:
            yield seen
        finally:
            for h in handles:
                h.remove()

    @contextmanager
    def seed_backward(self) -> Iterator[None]:
        """Wrap the backward of a seed's own loss: any nonzero host gradient is a violation."""
        with self._watch(self.host_params, "host") as seen:
            yield
        worst = max(seen, default=0.0)
        self.host_grad_from_seed = max(self.host_grad_from_seed, worst)
        if worst != 0.0:
            self.record(f"seed loss reached the host (|grad| {worst:.3g})")
        sq = [float(p.grad.detach().pow(2).sum()) for p in self.seed_params if p.grad is not None]
        self.seed_grad_norms.append(sum(sq) ** 0.5)

    @contextmanager
    def host_backward(self) -> Iterator[None]:
        """Wrap the backward of the host's loss: any nonzero seed gradient is a violation."""
        with self._watch(self.seed_params, "seed") as seen:
            yield
        worst = max(seen, default=0.0)
        self.seed_grad_from_host = max(self.seed_grad_from_host, worst)
        if worst != 0.0:
            self.record(f"host loss reached the seed (|grad| {worst:.3g})")

    def check_output(self, host: torch.Tensor, out: torch.Tensor) -> bool:
        """During TRAINING the layer's output must be the host's, bit for bit."""
        same = out is host or (out.shape == host.shape and out.dtype == host.dtype and bit_equal(out, host))
        if not same:
            self.record("layer output differs from the host's during TRAINING")
        return same
