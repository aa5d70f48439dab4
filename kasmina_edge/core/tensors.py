"""Tensors at the edges of an artifact: shape, dtype and int8 grid, and the arithmetic on that grid.

The device hands raw int8 tensors from one artifact to the next (the build matches the grids at
every cut); wherever it has to combine two tensors (alpha blending) or look at real values (health,
drift), it dequantizes with the grid the manifest records and requantizes onto the grid of the
tensor that receives the result.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kasmina_edge.contracts.manifest import TensorSpec

_INT_RANGES: dict[str, tuple[int, int]] = {
    "int8": (-128, 127),
    "uint8": (0, 255),
    "int16": (-32768, 32767),
    "int32": (-(2**31), 2**31 - 1),
}


@dataclass(frozen=True)
class TensorInfo:
    """One input or output of a loaded artifact. ``scale``/``zero_point`` are per tensor (None: float)."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: float | None = None
    zero_point: int = 0

    @property
    def quantized(self) -> bool:
        return self.scale is not None

    @property
    def numpy_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @classmethod
    def from_spec(cls, spec: TensorSpec) -> TensorInfo:
        scale = spec.scale[0] if spec.scale else None
        zp = spec.zero_point[0] if spec.zero_point else 0
        return cls(spec.name, tuple(spec.shape), spec.dtype, scale, int(zp))

    def same_grid(self, other: TensorInfo) -> bool:
        """Exact float32 equality of scales and zero points: raw values can pass between the two."""
        if self.dtype != other.dtype:
            return False
        if self.scale is None or other.scale is None:
            return self.scale is None and other.scale is None
        return bool(np.float32(self.scale) == np.float32(other.scale)) and self.zero_point == other.zero_point

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        """Real values (float32) of a tensor of this info; a float tensor is returned as float32."""
        if self.scale is None:
            return np.asarray(q, dtype=np.float32)
        return ((np.asarray(q, dtype=np.int32) - self.zero_point) * np.float32(self.scale)).astype(np.float32)

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """Real values onto this tensor's grid (round half to even, saturating), in its dtype."""
        if self.scale is None:
            return np.asarray(x, dtype=self.numpy_dtype)
        lo, hi = _INT_RANGES[self.dtype]
        q = np.rint(np.asarray(x, dtype=np.float32) / np.float32(self.scale)) + self.zero_point
        return np.clip(q, lo, hi).astype(self.numpy_dtype)


def blend(
    base: np.ndarray,
    base_info: TensorInfo,
    kernel: np.ndarray,
    kernel_info: TensorInfo,
    alpha: float,
    out_info: TensorInfo,
) -> np.ndarray:
    """``(1 - alpha) * base + alpha * kernel`` in real values, requantized onto ``out_info``'s grid.

    Both operands are dequantized with their own grids first: blending raw int8 values is only right
    when both grids are equal, and even then the zero point must be taken out before scaling.
    """
    if alpha <= 0.0 and base_info.same_grid(out_info):
        return base
    if alpha >= 1.0 and kernel_info.same_grid(out_info):
        return kernel
    real = (1.0 - alpha) * base_info.dequantize(base) + alpha * kernel_info.dequantize(kernel)
    return out_info.quantize(real)
