"""The device's observation buffers: recent probabilities (entropy as core.features computes it)."""

from __future__ import annotations

import numpy as np

from kasmina_edge.core.features import prediction_entropy
from kasmina_edge.runtime.observation import RecentProbs


def test_recent_entropy_is_core_prediction_entropy_of_the_last_rows() -> None:
    rng = np.random.default_rng(3)
    recent = RecentProbs(8)
    rows: list[np.ndarray] = []
    for i in range(30):
        p = rng.dirichlet(np.full(5, 0.3 if i % 3 else 5.0)).astype(np.float32)
        p[rng.integers(5)] = 0.0 if i % 7 == 0 else p[0]  # exact zeros hit the clip
        recent.add(p)
        rows.append(p)
        assert recent.entropy() == prediction_entropy(np.stack(rows[-8:]))  # bit for bit
    recent.add(np.full(5, np.nan, np.float32))  # not finite: not a row
    assert len(recent) == 8 and recent.entropy() == prediction_entropy(np.stack(rows[-8:]))
