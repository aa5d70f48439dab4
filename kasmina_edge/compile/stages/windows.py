"""Stage 3, windows: the beats a build calibrates on and judges with (synthetic patients the model never
saw, MIT-BIH record 100 when present, or a patient's own beats for patient kernels)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

    from kasmina_edge.compile.stages.request import BuildRequest


@dataclass
class EvalSet:
    name: str
    windows: np.ndarray
    rr: np.ndarray
    labels: np.ndarray


@dataclass
class BuildWindows:
    calibration_x: torch.Tensor  # (B, 1, window) float32
    calibration_rr: torch.Tensor  # (B, rr features) float32
    evals: list[EvalSet]  # the first is the one the PTQ tolerance, target checks and reference vectors use
    kernel_calibration: tuple[torch.Tensor, torch.Tensor] | None  # a patient's beats, for its kernels' grids


def _shared_data_dir() -> Path:
    # kasmina_edge/compile/stages/windows.py: parents[3] is the checkout; the data sits beside it
    return Path(__file__).resolve().parents[3].parent / "shared" / "data"


def default_record100() -> Path | None:
    base = _shared_data_dir() / "mitdb" / "100"
    return base if base.with_suffix(".hea").exists() else None


def load_data(req: BuildRequest) -> tuple[EvalSet, list[EvalSet]]:
    """Calibration windows and the evaluation sets (held-out synthetic; MIT-BIH 100 when present)."""
    from kasmina_edge.ecg.dataset import beats_from_record, synthetic_patients
    from kasmina_edge.host.data import SPEC, beats

    cal = beats(synthetic_patients(req.calibration_patients, req.minutes, seed=req.data_seed))
    held = beats(synthetic_patients(req.heldout_patients, req.minutes, seed=req.data_seed + 1))
    n = req.parity_windows
    evals = [EvalSet("synthetic held-out", held.windows[:n], held.rr[:n], held.labels[:n])]
    rec = req.record100 or default_record100()
    if rec is not None:
        from kasmina_edge.ecg.wfdb_io import read_wfdb

        d = beats_from_record(read_wfdb(rec), SPEC)
        evals.append(EvalSet("MIT-BIH 100", d.windows[:n], d.rr[:n], d.labels[:n]))
    calib = EvalSet("calibration", cal.windows, cal.rr, cal.labels)
    return calib, evals


def load_windows(req: BuildRequest) -> BuildWindows:
    """The request's windows as the later stages take them (calibration as float32 tensors)."""
    import torch

    calib, evals = load_data(req)
    xc = torch.from_numpy(np.ascontiguousarray(calib.windows, np.float32))
    rc = torch.from_numpy(np.ascontiguousarray(calib.rr, np.float32))
    kernel_cal = None
    if req.kernel_beats is not None and len(req.kernel_beats.windows):
        # a patient's kernels are judged on the patient's beats: population windows would
        # reach them with activations they were never meant for
        evals = [req.kernel_beats]
        kernel_cal = (
            torch.from_numpy(np.ascontiguousarray(req.kernel_beats.windows, np.float32)),
            torch.from_numpy(np.ascontiguousarray(req.kernel_beats.rr, np.float32)),
        )
    return BuildWindows(xc, rc, evals, kernel_cal)
