"""Per-chunk telemetry of a KasminaLayer, computed vectorised (one reduction per statistic)."""

from __future__ import annotations

import torch

# What ``KasminaLayer.telemetry()`` returns per chunk (each an (S,) tensor).
TELEMETRY_KEYS: tuple[str, ...] = ("mean", "var", "dead_ratio", "drift", "utilization")


def chunk_stats(y: torch.Tensor, chunks: int, dead_eps: float = 0.0) -> torch.Tensor:
    """(S, 5) float32: sum, sumsq, min, max, dead count per chunk of y (B, C, L); the same fields,
    in the same order, as ``kernels.reference.seed_layer_reference`` returns."""
    b, c, n = y.shape
    f = y.detach().float().reshape(b, chunks, c // chunks, n)
    return torch.stack(
        [
            f.sum(dim=(0, 2, 3)),
            (f * f).sum(dim=(0, 2, 3)),
            f.amin(dim=(0, 2, 3)),
            f.amax(dim=(0, 2, 3)),
            (f.abs() <= dead_eps).sum(dim=(0, 2, 3)).float(),
        ],
        dim=1,
    )


def chunk_abs_sum(y: torch.Tensor, chunks: int) -> torch.Tensor:
    b, c, n = y.shape
    return y.detach().float().abs().reshape(b, chunks, c // chunks, n).sum(dim=(0, 2, 3))
