"""Residual blueprints that look along time: depthwise-separable, sliding conv, denoising autoencoder."""

from __future__ import annotations

import torch
from torch import nn

from kasmina_edge.host.blueprints._parts import check_positive, odd_kernel, pointwise, zero_
from kasmina_edge.host.blueprints.registry import BlueprintParamError, register_blueprint


@register_blueprint(
    "depthwise_separable",
    description="x + PW·relu(DW_k·x): per-channel temporal filter, then a zero-initialised channel mix.",
    param_count=lambda c, kernel_size: c * kernel_size + c + c * c + c,
    macs=lambda c, n, kernel_size: (c * kernel_size + c * c) * n,
    ops=("DEPTHWISE_CONV_2D", "CONV_2D", "RELU", "ADD"),
    defaults={"kernel_size": 5},
)
class DepthwiseSeparable(nn.Module):
    def __init__(self, channels: int, length: int | None = None, kernel_size: int = 5) -> None:
        super().__init__()
        odd_kernel("depthwise_separable", kernel_size)
        self.dw = nn.Conv1d(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels)
        self.pw = zero_(pointwise(channels, channels, bias=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pw(torch.relu(self.dw(x)))


@register_blueprint(
    "sliding_conv",
    description="x + Conv_k(x): a full C->C sliding 1-D convolution, zero-initialised.",
    param_count=lambda c, kernel_size: c * c * kernel_size + c,
    macs=lambda c, n, kernel_size: c * c * kernel_size * n,
    ops=("CONV_2D", "ADD"),
    defaults={"kernel_size": 3},
)
class SlidingConv(nn.Module):
    def __init__(self, channels: int, length: int | None = None, kernel_size: int = 3) -> None:
        super().__init__()
        odd_kernel("sliding_conv", kernel_size)
        self.conv = zero_(nn.Conv1d(channels, channels, kernel_size, padding=kernel_size // 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x)


@register_blueprint(
    "denoising_autoencoder",
    description="x + Dec_k(relu(Enc_k(x + noise))): a temporal bottleneck trained on corrupted input.",
    param_count=lambda c, hidden, kernel_size, noise_std: 2 * c * hidden * kernel_size + hidden + c,
    macs=lambda c, n, hidden, kernel_size, noise_std: 2 * c * hidden * kernel_size * n,
    ops=("CONV_2D", "RELU", "ADD"),
    defaults={"hidden": 8, "kernel_size": 5, "noise_std": 0.1},
)
class DenoisingAutoencoder(nn.Module):
    def __init__(
        self, channels: int, length: int | None = None, hidden: int = 8, kernel_size: int = 5,
        noise_std: float = 0.1,
    ) -> None:  # fmt: skip
        super().__init__()
        check_positive("hidden", "denoising_autoencoder", hidden)
        odd_kernel("denoising_autoencoder", kernel_size)
        if noise_std < 0:
            raise BlueprintParamError(f"blueprint 'denoising_autoencoder': noise_std must be >= 0, got {noise_std}")
        self.noise_std = float(noise_std)
        self.enc = nn.Conv1d(channels, hidden, kernel_size, padding=kernel_size // 2)
        self.dec = zero_(nn.Conv1d(hidden, channels, kernel_size, padding=kernel_size // 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x
        if self.training and self.noise_std > 0:
            # The corruption is what makes it *denoising*: it must learn to map noisy -> clean.
            z = x + self.noise_std * torch.randn_like(x)
        return x + self.dec(torch.relu(self.enc(z)))
