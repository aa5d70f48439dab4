"""The event injector's checks can fail: a runtime that never rolls a NaN kernel back fails stage 4."""

from __future__ import annotations

from pathlib import Path

import pytest
from vrun import run_pipeline, stage


def test_a_nan_kernel_left_in_the_answers_fails_stage_4(good_bundle: Path, records: Path, plan_file: Path,
                                                        keys: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from kasmina_edge.runtime.lifecycle import SeedManager

    monkeypatch.setattr(SeedManager, "on_fault", lambda self, fault: None)  # a breaker that never opens
    run, _ = run_pipeline(good_bundle, records, plan_file, keys, tmp_path, only={"faults"})
    s4 = stage(run, "faults")
    nan = next(f for f in s4.metrics["faults"] if f["fault"] == "nan_kernel")
    assert s4.status == "fail" and not nan["passed"]
    assert "still in the answers" in nan["reason"] and nan["detail"]["rollbacks"] == 0

