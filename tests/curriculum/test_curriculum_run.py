"""The whole curriculum, quick runs of stages 0-6 in one go (CI's slow tier): every stage reports its three arms."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kasmina_edge.curriculum.registry import STAGES
from kasmina_edge.curriculum.runner import run_curriculum


@pytest.mark.slow
def test_every_stage_reports_base_seeds_and_fine_tuning(tmp_path: Path) -> None:
    run = run_curriculum(sorted(STAGES), tmp_path, quick=True, keep_going=True)
    assert [o.index for o in run.outcomes] == sorted(STAGES)
    for outcome in run.outcomes:
        assert outcome.status in ("passed", "failed"), (outcome.index, outcome.status, outcome.reason)
        report = outcome.report
        assert report is not None and report.fine_tuned is not None
        assert report.lifecycle, f"stage {outcome.index}: no lifecycle trace"
        assert report.base.params > 0 and report.fine_tuned.params > 0
        assert (tmp_path / f"stage{outcome.index}" / "report.json").is_file()
    written = json.loads((tmp_path / "curriculum.json").read_text())
    assert len(written["outcomes"]) == len(STAGES)
