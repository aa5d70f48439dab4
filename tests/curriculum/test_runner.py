"""The curriculum's progression: stage selection, judging, guardrails, transitions and what is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.curriculum import registry
from kasmina_edge.curriculum.runner import run_curriculum
from kasmina_edge.curriculum.stage import ArmScore, StageContext, StageReport

RAN: list[int] = []


class FakeStage:
    """A stage whose figures the test sets: base / seeds / target and one check."""

    def __init__(self, index: int, base: float, seeded: float, target: float = 0.8, check: bool = True,
                 error: str = "") -> None:  # fmt: skip
        self.index, self.name, self.domain = index, f"fake{index}", "test"
        self.base, self.seeded, self.target, self.check, self.error = base, seeded, target, check, error

    def run(self, ctx: StageContext) -> StageReport:
        RAN.append(self.index)
        assert ctx.workdir.is_dir()
        if self.error:
            raise KasminaError(self.error)
        return StageReport(self.index, self.name, self.domain, "accuracy", self.target, ArmScore(self.base, 100),
                           ArmScore(self.seeded, 7), ArmScore(0.9, 100), checks={"guard": self.check})  # fmt: skip


def passing_stage() -> FakeStage:
    return FakeStage(0, 0.6, 0.85)


def already_there_stage() -> FakeStage:
    return FakeStage(1, 0.9, 0.95)  # the base meets the target: seeds have nothing to show


def short_stage() -> FakeStage:
    return FakeStage(2, 0.6, 0.7)  # seeds do not reach the target


def guard_stage() -> FakeStage:
    return FakeStage(3, 0.6, 0.9, check=False)


def error_stage() -> FakeStage:
    return FakeStage(4, 0.6, 0.9, error="stage data missing")


@pytest.fixture(autouse=True)
def fake_stages(monkeypatch: pytest.MonkeyPatch) -> None:
    here = __name__
    names = ["passing_stage", "already_there_stage", "short_stage", "guard_stage", "error_stage"]
    monkeypatch.setattr(registry, "STAGES", {i: f"{here}:{n}" for i, n in enumerate(names)})
    RAN.clear()


def test_parse_stages() -> None:
    assert registry.parse_stages("0-2") == [0, 1, 2]
    assert registry.parse_stages("4, 0-1") == [0, 1, 4]
    for bad in ("9", "2-1", "a", "0-x"):
        with pytest.raises(KasminaError, match="--stages"):
            registry.parse_stages(bad)


def test_a_passing_stage_hands_over_and_a_failing_one_stops_the_run(tmp_path: Path) -> None:
    run = run_curriculum([0, 1, 2], tmp_path)
    assert RAN == [0, 1]  # stage 1 failed: stage 2 never started
    assert [o.status for o in run.outcomes] == ["passed", "failed", "skipped"]
    assert "already meets the target" in run.outcomes[1].reason
    assert not run.passed
    written = json.loads((tmp_path / "curriculum.json").read_text())
    assert [o["status"] for o in written["outcomes"]] == ["passed", "failed", "skipped"]
    assert json.loads((tmp_path / "stage0" / "report.json").read_text())["passed"] is True


def test_keep_going_runs_every_stage_and_names_each_failure(tmp_path: Path) -> None:
    run = run_curriculum([0, 1, 2, 3, 4], tmp_path, keep_going=True)
    assert RAN == [0, 1, 2, 3, 4]
    status = {o.index: (o.status, o.reason) for o in run.outcomes}
    assert status[0][0] == "passed"
    assert status[2] == ("failed", "base + seeds 0.700 < target 0.800")
    assert status[3] == ("failed", "checks failed: guard")
    assert status[4] == ("error", "stage data missing")
    assert not run.passed


def test_cli_run_exits_1_on_a_failed_stage_and_0_when_all_pass(tmp_path: Path) -> None:
    from kasmina_edge.cli.app import app

    ok = CliRunner().invoke(app, ["curriculum", "run", "--stages", "0", "--out", str(tmp_path / "a"), "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["passed"] is True
    bad = CliRunner().invoke(app, ["curriculum", "run", "--stages", "0-2", "--out", str(tmp_path / "b")])
    assert bad.exit_code == 1
    assert "already meets the target" in bad.output
