"""The one rule for kernels meeting a base: kind, target, checkpoint hash, sites, site grids."""

from __future__ import annotations

from typing import Any

import pytest

from kasmina_edge.contracts.manifest import SCHEMA, BundleManifest, parse_manifest
from kasmina_edge.core.kernel_fit import kernel_bundle_misfit, misfit

BASE_SHA = "ab" * 32
SITE_GRID = {"scale": 0.05, "zero_point": -3}


def _spec(grid: tuple[float, int] | None) -> dict[str, Any]:
    if grid is None:  # an ONNX QDQ kernel takes and gives floats at its edges
        return {"name": "x", "shape": [1, 8, 64], "dtype": "float32"}
    return {"name": "x", "shape": [1, 8, 64], "dtype": "int8", "scale": [grid[0]], "zero_point": [grid[1]]}


def _artifact(name: str, kind: str, site: int | None = None, grid: tuple[float, int] | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "kind": kind, "format": "tflite-int8", "file": f"artifacts/{name}.tflite",
                             "sha256": "00" * 32, "bytes": 1}  # fmt: skip
    if site is not None:
        entry.update(site=site, blueprint="bottleneck_adapter", input_specs=[_spec(grid)], output_specs=[_spec(grid)])
    return entry


def _manifest(kind: str = "full", *, target: str = "x86", sha: str = BASE_SHA, **kernel: Any) -> BundleManifest:
    data: dict[str, Any] = {
        "schema": SCHEMA, "kind": kind, "target": target, "profile": "x86-host", "format": "tflite-int8",
        "model": {"checkpoint_sha256": sha},
        "provenance": {"kasmina_edge": "0.1.0", "built_at": "2026-12-01T00:00:00Z"},
    }  # fmt: skip
    if kind == "full":
        data["sites"] = [{"index": i, "name": f"site{i}", "channels": 8, "length": 64, "grid": SITE_GRID} for i in (0, 1)]
        data["chain"] = {"segments": ["seg0", "seg1", "seg2"], "default_active": {}}
        data["artifacts"] = [_artifact(f"seg{i}", "segment") for i in range(3)]
    else:
        data["artifacts"] = [_artifact("k0", "kernel", kernel.get("site", 1), kernel.get("grid", (0.05, -3)))]
    return parse_manifest(data)


def test_a_kernel_bundle_for_this_base_fits() -> None:
    assert kernel_bundle_misfit(_manifest("kernels"), _manifest()) is None


@pytest.mark.parametrize(
    ("kernels", "expected"),
    [
        (_manifest("kernels", target="edgetpu"), "kernel bundle is built for target edgetpu; emu://p runs x86"),
        (_manifest("kernels", sha="cd" * 32), "kernel bundle is for base cdcdcdcdcdcd, emu://p runs base abababababab"),
        (_manifest("kernels", site=5), "kernel k0 sits at site 5; the base has sites [0, 1]"),
        (_manifest("kernels", grid=(0.075, -3)), "kernel k0 at site 1: int8 grid scale=0.075 differs from the base's"),
        (_manifest("kernels", grid=(0.05, 0)), "kernel k0 at site 1: int8 grid scale=0.05 differs"),
        (_manifest(), "is a full image, not kernels only"),
    ],
)
def test_each_misfit_is_named_in_one_line(kernels: BundleManifest, expected: str) -> None:
    problem = kernel_bundle_misfit(kernels, _manifest(), device="emu://p")
    assert problem is not None and expected in problem and "\n" not in problem


def test_a_grid_within_float_noise_fits_and_a_float_edge_is_not_compared() -> None:
    assert kernel_bundle_misfit(_manifest("kernels", grid=(0.05 * (1 + 1e-12), -3)), _manifest()) is None
    assert kernel_bundle_misfit(_manifest("kernels", grid=None), _manifest()) is None


def test_the_host_checks_a_base_bundle_before_any_kernel_exists() -> None:
    base = _manifest()
    assert misfit(base, checkpoint_sha256=BASE_SHA, target="x86") is None
    assert "built for target cortex-m" in (misfit(base, checkpoint_sha256=BASE_SHA, target="cortex-m") or "")
    not_a_base = _manifest("kernels")
    assert misfit(not_a_base, checkpoint_sha256=BASE_SHA, target="x86", device="--base-bundle k.kedge") == (
        "--base-bundle k.kedge holds a kernels bundle, not a base (full) bundle"
    )
