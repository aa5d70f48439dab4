"""Shared bits of the runtime tests: images, a settable clock, windows."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import numpy as np

from kasmina_edge.contracts.bundle import read_bundle
from kasmina_edge.contracts.events import RuntimeEvent, SeedTransition
from kasmina_edge.runtime.backends import LiteRtBackend, OrtBackend
from kasmina_edge.runtime.image import Image, load_image

KERNEL0 = "kernel_s0_emg-denoise_site0"
KERNEL1 = "kernel_s1_lead-adapter_site1"
NAN_KERNEL = "kernel_s0_nan"


def image(bundles: Path, keys: Path, target: str = "linux-arm") -> Image:
    b = read_bundle(bundles / f"{target}-v1.kedge", keys)
    return load_image(b, OrtBackend() if target == "x86" else LiteRtBackend("builtin"))


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def windows(n: int, seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(256)
    x = np.exp(-0.5 * ((t[None, :] - 90) / rng.uniform(4, 20, n)[:, None]) ** 2) + 0.2 * rng.standard_normal((n, 256))
    rr = rng.uniform(0.5, 1.2, (n, 4))
    return x[:, None, :].astype(np.float32), rr.astype(np.float32)


E = TypeVar("E")


class Events(list[RuntimeEvent]):
    """What a sink received, in order."""

    def of(self, kind: type[E]) -> list[E]:
        return [e for e in self if isinstance(e, kind)]

    def transitions(self, kernel: str) -> list[tuple[str, str]]:
        return [(e.transition.src.name, e.transition.dst.name) for e in self.of(SeedTransition) if e.kernel == kernel]
