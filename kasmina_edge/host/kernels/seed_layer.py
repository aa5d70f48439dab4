"""Dispatching entry for the chunked seed layer: the fused Triton kernel on CUDA, the reference elsewhere.

The Triton path is an autograd.Function: the forward is the fused kernel, the backward recomputes
the (cheap, memory-bound) bottleneck in PyTorch from the saved inputs and differentiates it. Dormant
seeds' weights are zeroed before that recompute so garbage/NaN in them cannot reach any gradient
(the plain reference would let 0·NaN into dx); their own gradients are exactly zero.
"""

from __future__ import annotations

import functools
from typing import Any, Literal

import torch

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.host.kernels.reference import DORMANT_CODE, seed_layer_reference

Backend = Literal["auto", "triton", "reference"]
# dtypes the fused kernel computes in fp32 and rounds once; anything else (fp64) keeps the reference.
TRITON_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


class SeedLayerShapeError(KasminaError):
    """The activation, stage/alpha vectors and adapter weights do not describe one seed layer."""


@functools.cache
def triton_available() -> bool:
    """True when triton imports (checked once; importing it is slow)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def _check_shapes(
    x: torch.Tensor, stage: torch.Tensor, alpha: torch.Tensor, w_down: torch.Tensor, w_up: torch.Tensor
) -> None:
    if x.dim() != 2 or w_down.dim() != 3 or w_up.dim() != 3:
        raise SeedLayerShapeError(
            f"seed layer: x must be (N, D), w_down (S, c, r), w_up (S, r, c); got x {tuple(x.shape)}, "
            f"w_down {tuple(w_down.shape)}, w_up {tuple(w_up.shape)}"
        )
    s, c, r = w_down.shape
    if x.shape[1] != s * c:
        raise SeedLayerShapeError(f"seed layer: D={x.shape[1]} is not S·c = {s}·{c}")
    if tuple(w_up.shape) != (s, r, c):
        raise SeedLayerShapeError(f"seed layer: w_up is {tuple(w_up.shape)}, expected {(s, r, c)}")
    if stage.numel() != s or alpha.numel() != s:
        raise SeedLayerShapeError(
            f"seed layer: stage has {stage.numel()} and alpha {alpha.numel()} entries, expected S={s}"
        )


class _SeedLayerTriton(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: torch.Tensor,
        stage: torch.Tensor,
        alpha: torch.Tensor,
        w_down: torch.Tensor,
        w_up: torch.Tensor,
        dead_eps: float,
        telemetry: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        from kasmina_edge.host.kernels.triton_seed_layer import seed_layer_triton

        out, tel = seed_layer_triton(x, stage, alpha, w_down, w_up, dead_eps, telemetry)
        ctx.save_for_backward(x, stage, alpha, w_down, w_up)
        if tel is not None:
            ctx.mark_non_differentiable(tel)
        return out, tel

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: Any, grad_out: torch.Tensor, _grad_tel: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, ...]:
        x, stage, alpha, w_down, w_up = ctx.saved_tensors
        live = (stage != DORMANT_CODE).view(-1, 1, 1)
        with torch.enable_grad():
            xs = x.detach().requires_grad_(ctx.needs_input_grad[0])
            al = alpha.detach().requires_grad_(ctx.needs_input_grad[2])
            wd = w_down.detach().requires_grad_(ctx.needs_input_grad[3])
            wu = w_up.detach().requires_grad_(ctx.needs_input_grad[4])
            zero = torch.zeros((), dtype=w_down.dtype, device=w_down.device)
            out, _ = seed_layer_reference(
                xs, stage, al, torch.where(live, wd, zero), torch.where(live, wu, zero), telemetry=False
            )
            inputs = [t for t in (xs, al, wd, wu) if t.requires_grad]
            grads = iter(torch.autograd.grad(out, inputs, grad_out, allow_unused=True) if inputs else ())
        gx = next(grads) if xs.requires_grad else None
        ga = next(grads) if al.requires_grad else None
        gd = next(grads) if wd.requires_grad else None
        gu = next(grads) if wu.requires_grad else None
        if ga is None and al.requires_grad:
            ga = torch.zeros_like(alpha)
        return gx, None, ga, gd, gu, None, None


def seed_layer(
    x: torch.Tensor,
    stage: torch.Tensor,
    alpha: torch.Tensor,
    w_down: torch.Tensor,
    w_up: torch.Tensor,
    dead_eps: float = 0.0,
    telemetry: bool = True,
    backend: Backend = "auto",
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(out (N, D), telemetry (S, 5) float32 or None) — see reference.py for the semantics.

    backend="auto" uses the fused Triton kernel for CUDA tensors of a float dtype it supports when
    triton imports, the PyTorch reference otherwise — also while torch.compile traces, where Inductor
    fuses the reference itself. "triton" forces the kernel (CPU tensors work under TRITON_INTERPRET=1).
    """
    _check_shapes(x, stage, alpha, w_down, w_up)
    use_triton = backend == "triton" or (
        backend == "auto"
        and x.is_cuda
        and x.dtype in TRITON_DTYPES
        and not torch.compiler.is_compiling()
        and triton_available()
    )
    if not use_triton:
        return seed_layer_reference(x, stage, alpha, w_down, w_up, dead_eps, telemetry)
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (x, alpha, w_down, w_up))
    if not needs_grad:  # inference: no autograd node, no saved tensors
        from kasmina_edge.host.kernels.triton_seed_layer import seed_layer_triton

        return seed_layer_triton(x, stage, alpha, w_down, w_up, float(dead_eps), bool(telemetry))
    out, tel = _SeedLayerTriton.apply(x, stage, alpha, w_down, w_up, float(dead_eps), bool(telemetry))
    return out, tel
