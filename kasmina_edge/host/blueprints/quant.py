"""QAT-ready adapter: a bottleneck trained through straight-through fake quantisation (8 or 4 bits)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from kasmina_edge.host.blueprints._parts import Bottleneck, check_positive
from kasmina_edge.host.blueprints.registry import BlueprintParamError, register_blueprint

QUANT_BITS = (4, 8)


def fake_quant_symmetric(x: torch.Tensor, scale: torch.Tensor, bits: int) -> torch.Tensor:
    """Round to a symmetric ``bits``-bit grid, straight-through gradient (d out / d x = 1).

    Written by hand rather than torch.ao's fake-quant modules: it is four exportable ops and the
    same code quantises weights (per output channel) and activations (per tensor).
    """
    qmax = 2 ** (bits - 1) - 1
    q = torch.clamp(torch.round(x / scale), -qmax, qmax) * scale
    return x + (q - x).detach()


def _weight_scale(w: torch.Tensor, bits: int) -> torch.Tensor:
    qmax = 2 ** (bits - 1) - 1
    # Per output channel; the floor keeps an all-zero (freshly initialised) row exactly zero.
    return (w.detach().abs().amax(dim=tuple(range(1, w.dim())), keepdim=True) / qmax).clamp_min(1e-12)


@register_blueprint(
    "quant_adapter",
    description="Bottleneck adapter with fake-quantised weights and hidden activations (bits=8 or 4), STE.",
    param_count=lambda c, rank, bits: 2 * c * rank,
    macs=lambda c, n, rank, bits: 2 * c * rank * n,
    ops=("CONV_2D", "RELU", "ADD", "QUANTIZE"),
    defaults={"rank": 4, "bits": 8},
    # The Edge TPU runs int8 only: 4-bit weights need a target with sub-byte kernels or unpacking.
    target_filter=lambda target, c, rank, bits: target != "edgetpu" or bits == 8,
)
class QuantAdapter(nn.Module):
    def __init__(self, channels: int, length: int | None = None, rank: int = 4, bits: int = 8) -> None:
        super().__init__()
        check_positive("rank", "quant_adapter", rank)
        if bits not in QUANT_BITS:
            raise BlueprintParamError(f"blueprint 'quant_adapter': bits must be one of {QUANT_BITS}, got {bits}")
        self.bits = bits
        self.block = Bottleneck(channels, rank)
        # Running abs-max of the hidden activation (an observer); 0 until the first training batch.
        self.register_buffer("act_absmax", torch.zeros(()))
        self.momentum = 0.1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w_down = self.block.down.weight
        w_up = self.block.up.weight
        w_down_q = fake_quant_symmetric(w_down, _weight_scale(w_down, self.bits), self.bits)
        w_up_q = fake_quant_symmetric(w_up, _weight_scale(w_up, self.bits), self.bits)
        h = torch.relu(F.conv1d(x, w_down_q))
        if self.training:
            with torch.no_grad():
                seen = h.detach().abs().amax()
                first = self.act_absmax == 0
                self.act_absmax.copy_(torch.where(first, seen, (1 - self.momentum) * self.act_absmax + self.momentum * seen))
        qmax = 2 ** (self.bits - 1) - 1
        h = fake_quant_symmetric(h, (self.act_absmax / qmax).clamp_min(1e-12), self.bits)
        return x + F.conv1d(h, w_up_q)
