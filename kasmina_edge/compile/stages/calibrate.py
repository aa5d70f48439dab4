"""Stage 4, calibrate: one int8 grid per site (and one for the logits), and the model cut into the
artifacts to export, each with its calibration and the grids forced at its cuts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from kasmina_edge.compile.quantize import QuantGrid
    from kasmina_edge.compile.split import ArtifactSpec, SegmentedModel
    from kasmina_edge.compile.stages.request import BuildRequest
    from kasmina_edge.compile.stages.windows import BuildWindows


@dataclass
class Calibration:
    grids: dict[int, QuantGrid]  # site index -> the grid every artifact meeting there shares
    logit_grid: QuantGrid
    specs: list[ArtifactSpec]  # segments and kernels, in export order
    band: tuple[float, ...]  # (low, high) logits the logit grid holds: parity compares within it


def calibrate(req: BuildRequest, model: SegmentedModel, windows: BuildWindows) -> Calibration:
    from kasmina_edge.compile.split import calibrate_logit_grid, calibrate_site_grids, plan_artifacts

    xc, rc = windows.calibration_x, windows.calibration_rr
    grids = req.site_grids or calibrate_site_grids(model, xc, rc, headroom=req.site_headroom)
    logit_grid = req.logit_grid or calibrate_logit_grid(model, xc, rc)
    if req.site_grids:
        # kernels for a base already on the device: the float reference rounds and saturates at
        # its grids, as the device does, so parity and the PTQ check judge what the device runs
        model.site_grids = dict(grids)
    specs = plan_artifacts(model, grids, xc, rc, kernel_bits=req.bits, logit_grid=logit_grid,
                           kernel_calibration=windows.kernel_calibration, probe_gains=req.probe_gains)  # fmt: skip
    band = tuple(float(v) for v in logit_grid.dequantize(np.array([-128, 127])))
    return Calibration(grids, logit_grid, specs, band)
