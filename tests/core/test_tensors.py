"""Alpha blending in the int8 domain: dequantize each operand with its own grid, requantize onto the site's."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kasmina_edge.core.tensors import TensorInfo, blend

SITE = TensorInfo("site", (1, 4, 8), "int8", 0.05, -3)


def _q(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(-128, 128, SITE.shape).astype(np.int8)


def test_alpha_zero_and_one_pass_raw_values_through() -> None:
    rng = np.random.default_rng(0)
    a, b = _q(rng), _q(rng)
    assert blend(a, SITE, b, SITE, 0.0, SITE) is a
    assert blend(a, SITE, b, SITE, 1.0, SITE) is b


@settings(max_examples=60, deadline=None)
@given(alpha=st.floats(0.01, 0.99), scale_k=st.floats(0.01, 0.2), zp_k=st.integers(-20, 20), seed=st.integers(0, 1000))
def test_blend_is_the_nearest_grid_value_of_the_real_mix(alpha: float, scale_k: float, zp_k: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    kinfo = TensorInfo("k", SITE.shape, "int8", scale_k, zp_k)
    a, b = _q(rng), _q(rng)
    got = blend(a, SITE, b, kinfo, alpha, SITE)
    real = (1 - alpha) * (a.astype(np.float64) - SITE.zero_point) * SITE.scale + alpha * (
        b.astype(np.float64) - kinfo.zero_point
    ) * kinfo.scale
    exact = np.clip(real / SITE.scale + SITE.zero_point, -128, 127)
    assert got.dtype == np.int8
    # the nearest grid value (a value within float32 rounding of a .5 tie may go either way)
    assert np.abs(got.astype(np.float64) - exact).max() <= 0.5 + 1e-4


def test_blending_raw_int8_without_zero_point_would_be_wrong() -> None:
    # the reason blend() dequantizes: with a non-zero zero point a raw mix is off
    a = np.full(SITE.shape, 11, np.int8)
    b = np.full(SITE.shape, 30, np.int8)
    kinfo = TensorInfo("k", SITE.shape, "int8", 0.1, 5)
    got = blend(a, SITE, b, kinfo, 0.5, SITE)
    naive = ((a.astype(int) + b.astype(int)) // 2).astype(np.int8)
    real = 0.5 * (11 + 3) * 0.05 + 0.5 * (30 - 5) * 0.1  # 1.6: 32 steps of 0.05
    assert int(got.flat[0]) == int(round(real / 0.05)) - 3
    assert int(got.flat[0]) != int(naive.flat[0])


def test_quantize_saturates_and_float_tensors_pass() -> None:
    q = SITE.quantize(np.array([1e6, -1e6, 0.0]))
    assert q.tolist() == [127, -128, -3]
    f = TensorInfo("f", (3,), "float32")
    np.testing.assert_array_equal(f.dequantize(np.array([1.5, 2.0, 3.0])), [1.5, 2.0, 3.0])
