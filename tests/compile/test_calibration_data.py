"""The int8 grids of a base trained on real recordings are calibrated on its own training beats."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kasmina_edge.compile.pipeline import BuildRequest, load_data
from kasmina_edge.ecg.dataset import BeatDataset
from kasmina_edge.host.patient import COMMON_KEY, common_beats_to_checkpoint


def _beats(n: int, seed: int) -> BeatDataset:
    rng = np.random.default_rng(seed)
    return BeatDataset(
        rng.normal(size=(n, 1, 256)).astype(np.float32), rng.random((n, 4)).astype(np.float32),
        np.arange(n, dtype=np.int64) % 4, np.full(n, "rec"), np.arange(n, dtype=np.int64) * 300,
    )  # fmt: skip


def test_real_base_calibrates_on_its_training_beats(tmp_path: Path) -> None:
    own = _beats(40, 1)
    req = BuildRequest(checkpoint=tmp_path / "base.pt", seeds=None, target="edgetpu", calibration_patients=1,
                       heldout_patients=1, minutes=0.5, parity_windows=8)  # fmt: skip
    calib, _ = load_data(req, {COMMON_KEY: common_beats_to_checkpoint(own)})
    assert calib.windows.shape == own.windows.shape
    np.testing.assert_array_equal(np.sort(calib.windows.ravel()), np.sort(own.windows.ravel()))
    np.testing.assert_array_equal(np.bincount(calib.labels), np.bincount(own.labels))
    synthetic, _ = load_data(req, {})  # a base trained on synthetic patients: synthetic calibration
    assert synthetic.windows.shape[0] != own.windows.shape[0] or not np.allclose(synthetic.windows, own.windows)
