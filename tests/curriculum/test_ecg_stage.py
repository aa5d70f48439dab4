"""Stage 3: ECG beats in muscle noise, grouped by patient, every adaptation beat with its clean twin."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kasmina_edge.curriculum.ecg_stage import ecg_stage, ecg_task
from kasmina_edge.curriculum.stage import StageContext


@pytest.mark.slow  # 24 synthetic records: ~20-50 s on two cores
def test_quick_task_keeps_patients_apart_and_twins_aligned() -> None:
    task, source = ecg_task(None, quick=True, seed=0)
    assert "synthetic" in source
    assert task.adapt_clean is not None and len(task.adapt_clean) == len(task.adapt)
    # the twins are the same beats: same labels, and the noise is what differs
    assert np.array_equal(task.adapt.labels, task.adapt_clean.labels)
    assert not np.allclose(task.adapt.windows, task.adapt_clean.windows)
    # the groups hold different patients: no window of the test group is in the base's training data
    train = {w.tobytes() for w in task.train.windows}
    assert not any(w.tobytes() in train for w in task.clean_test.windows)
    assert task.n_classes == 5 and task.window == 256 and task.n_aux == 4


@pytest.mark.slow
def test_quick_stage_reports_three_arms_and_the_lifecycle(tmp_path: Path) -> None:
    report = ecg_stage().run(StageContext(workdir=tmp_path, quick=True))
    assert report.index == 3 and report.metric.startswith("macro-F1")
    assert report.fine_tuned is not None and report.fine_tuned.params > report.seeded.params
    assert 0.0 <= report.base.metric <= 1.0 and 0.0 <= report.seeded.metric <= 1.0
    # every trial walked the lifecycle: germination, gates, and an end (fossilized or culled)
    events = [e.get("event") for e in report.lifecycle]
    assert "train_epoch" in events and "blend_step" in events or any("CULLED" in n for n in report.notes)
    assert set(report.checks) == {"noise_hurts_the_base", "seeds_keep_clean_accuracy"}
    assert report.target >= report.base.metric
