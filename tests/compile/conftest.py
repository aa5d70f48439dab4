"""Shared fixtures: a stand-in segmented CNN trained on a toy beat task, exported once per session.

Conversions are the slow part (seconds per artifact), so every test that needs converted models
takes them from the session-scoped fixtures here.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

torch = pytest.importorskip("torch")
pytest.importorskip("litert_torch")

from standin import Bottleneck, DepthwiseAdapter, StandIn, segmented  # noqa: E402

from kasmina_edge.compile.quantize import QuantGrid  # noqa: E402
from kasmina_edge.compile.split import ArtifactSpec, SegmentedModel, calibrate_site_grids, plan_artifacts  # noqa: E402


def toy_beats(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Five classes of 256-sample 'beats' (a bump whose width, height and timing depend on the class)
    with RR features that carry part of the label: enough structure for a model to learn in seconds."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 5, n)
    t = np.arange(256)
    width = np.array([6.0, 6.0, 18.0, 12.0, 30.0])[y]
    height = np.array([1.0, 1.0, 1.6, 1.2, 0.5])[y]
    shift = np.array([0.0, -20.0, 0.0, 10.0, 0.0])[y]
    x = height[:, None] * np.exp(-0.5 * ((t[None, :] - 128 - shift[:, None]) / width[:, None]) ** 2)
    x += 0.08 * rng.standard_normal(x.shape)
    rr = np.stack([0.8 - 0.25 * (y == 1), 0.8 + 0.2 * (y == 1), 0.8 * np.ones(n), np.ones(n)], axis=1)
    rr = rr + 0.03 * rng.standard_normal(rr.shape)
    return x[:, None, :].astype(np.float32), rr.astype(np.float32), y.astype(np.int64)


@dataclass
class Trained:
    segmented: SegmentedModel
    grids: dict[int, QuantGrid]
    specs: list[ArtifactSpec]
    x_cal: torch.Tensor
    rr_cal: torch.Tensor
    x_test: np.ndarray
    rr_test: np.ndarray
    y_test: np.ndarray


@pytest.fixture(scope="session")
def trained() -> Trained:
    torch.manual_seed(0)
    torch.set_num_threads(2)
    model = StandIn()
    model.adapters["1"] = Bottleneck(16)
    model.adapters["3"] = DepthwiseAdapter(32)
    x, rr, y = toy_beats(2048, 0)
    xt, rt, yt = torch.from_numpy(x), torch.from_numpy(rr), torch.from_numpy(y)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(150):
        idx = torch.randint(0, len(yt), (128,))
        loss = torch.nn.functional.cross_entropy(model(xt[idx], rt[idx]), yt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    sm = segmented(
        model,
        {
            1: [("seedA", "bottleneck_adapter", model.adapters["1"])],
            3: [("seedB", "depthwise", model.adapters["3"])],
        },
    )
    xc, rc, _ = toy_beats(512, 1)
    x_cal, rr_cal = torch.from_numpy(xc), torch.from_numpy(rc)
    grids = calibrate_site_grids(sm, x_cal, rr_cal)
    specs = plan_artifacts(sm, grids, x_cal, rr_cal)
    xe, re, ye = toy_beats(400, 2)
    return Trained(sm, grids, specs, x_cal, rr_cal, xe, re, ye)


@pytest.fixture(scope="session")
def tflite_artifacts(trained: Trained) -> dict[str, bytes]:
    from kasmina_edge.compile.export_tflite import export_int8_tflite

    out: dict[str, bytes] = {}
    for spec in trained.specs:
        data, _ = export_int8_tflite(
            spec.module,
            spec.example_args,
            spec.calibration,
            artifact=spec.name,
            input_grids=spec.input_grids,
            output_grid=spec.output_grid,
        )
        out[spec.name] = data
    return out


@pytest.fixture(scope="session")
def onnx_artifacts(trained: Trained) -> dict[str, bytes]:
    from kasmina_edge.compile.export_onnx import export_int8_onnx

    return {
        spec.name: export_int8_onnx(
            spec.module,
            spec.example_args,
            spec.calibration,
            artifact=spec.name,
            input_names=spec.input_names,
            input_grids=spec.input_grids,
            output_grid=spec.output_grid,
            reduce_range=True,
        )
        for spec in trained.specs
    }
