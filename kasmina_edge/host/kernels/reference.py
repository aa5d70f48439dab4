"""Vectorised PyTorch reference for a chunked seed layer with per-chunk low-rank adapters.

x is (N, D) with D = S·c: S seeds, each owning a chunk of c features (for a conv
activation (B, C, L) the KasminaLayer passes x = activation.permute(0, 2, 1).reshape(-1, C)).
Each seed's blueprint is a residual bottleneck  bp(x) = x + relu(x·W_down)·W_up  (rank r);
W_up starts at zero, so a germinated seed never changes the host's output at step 0.

Per seed, by stage code:
  DORMANT_CODE     out = x                         (adapter never evaluated; its weights may be garbage)
  BLENDING_CODE    out = (1 − α)·x + α·bp(x)  = x + α·relu(x·W_down)·W_up
  FOSSILIZED_CODE  out = bp(x)
Telemetry per seed over its chunk of ``out`` (all N rows): sum, sum of squares, min, max,
and the dead count (|out| <= dead_eps). The fused Triton kernel must match this function.
"""

from __future__ import annotations

import torch

DORMANT_CODE = 0
BLENDING_CODE = 1
FOSSILIZED_CODE = 2

TELEMETRY_FIELDS = ("sum", "sumsq", "min", "max", "dead")


def effective_alpha(stage: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """α per seed as the forward uses it: 0 dormant, α blending, 1 fossilized."""
    one = torch.ones_like(alpha)
    return torch.where(
        stage == FOSSILIZED_CODE, one, torch.where(stage == BLENDING_CODE, alpha, torch.zeros_like(alpha))
    )


def seed_layer_reference(
    x: torch.Tensor,
    stage: torch.Tensor,
    alpha: torch.Tensor,
    w_down: torch.Tensor,
    w_up: torch.Tensor,
    dead_eps: float = 0.0,
    telemetry: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Returns (out (N, D), telemetry (S, 5) float32 or None). No Python loop over seeds."""
    n, d = x.shape
    s, c, _r = w_down.shape
    if s * c != d:
        raise ValueError(f"seed layer: D={d} is not S·c = {s}·{c}")
    xc = x.reshape(n, s, c)
    hidden = torch.relu(torch.einsum("nsc,scr->nsr", xc, w_down))
    delta = torch.einsum("nsr,src->nsc", hidden, w_up)
    a = effective_alpha(stage, alpha).to(x.dtype)
    live = (stage != DORMANT_CODE).view(1, s, 1)
    # where(), not a·delta: a dormant seed's weights may hold NaN and must not leak.
    out_c = torch.where(live, xc + a.view(1, s, 1) * delta, xc)
    out = out_c.reshape(n, d)
    if not telemetry:
        return out, None
    f = out_c.float()
    tel = torch.stack(
        [
            f.sum(dim=(0, 2)),
            (f * f).sum(dim=(0, 2)),
            f.amin(dim=(0, 2)),
            f.amax(dim=(0, 2)),
            (f.abs() <= dead_eps).sum(dim=(0, 2)).float(),
        ],
        dim=1,
    )
    return out, tel
