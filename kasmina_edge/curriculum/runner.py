"""The curriculum's progression: stages in order, each judged before the next starts.

Transitions are automatic: a stage that passes (its base short of the target, base + seeds at or above it,
every check held) hands over to the next. The guardrails stop the walk: a stage that fails its criteria,
raises a user-facing error, or runs past its time allowance ends the run there (``keep_going`` runs the
rest anyway and still reports the failure). Every stage's report is written as it finishes (temp file,
then rename), so a run cut short keeps what it measured.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.curriculum.registry import load_stage
from kasmina_edge.curriculum.stage import Say, StageContext, StageReport

# A stage's time allowance: beyond it the run stops (the report still says what the stage measured).
QUICK_STAGE_S = 300.0
FULL_STAGE_S = 3600.0


@dataclass
class StageOutcome:
    index: int
    status: str  # "passed", "failed", "error", "over_time", "skipped"
    report: StageReport | None = None
    reason: str = ""
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "status": self.status, "reason": self.reason, "seconds": self.seconds,
                "report": None if self.report is None else self.report.to_dict()}  # fmt: skip


@dataclass
class CurriculumRun:
    stages: list[int]
    outcomes: list[StageOutcome] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return len(self.outcomes) == len(self.stages) and all(o.status == "passed" for o in self.outcomes)

    def to_dict(self) -> dict[str, Any]:
        return {"stages": self.stages, "passed": self.passed, "seconds": self.seconds,
                "outcomes": [o.to_dict() for o in self.outcomes]}  # fmt: skip


def _judge(index: int, report: StageReport, seconds: float, allowance: float) -> StageOutcome:
    if seconds > allowance:
        return StageOutcome(
            index, "over_time", report, f"ran {seconds:.0f} s, allowance {allowance:.0f} s", seconds
        )
    if not report.base_short_of_target:
        why = f"base {report.base.metric:.3f} already meets the target {report.target:.3f}: nothing for seeds to show"
        return StageOutcome(index, "failed", report, why, seconds)
    failed = [name for name, ok in report.checks.items() if not ok]
    if report.seeded.metric < report.target or failed:
        why = f"base + seeds {report.seeded.metric:.3f} < target {report.target:.3f}" if (
            report.seeded.metric < report.target) else f"checks failed: {', '.join(failed)}"  # fmt: skip
        return StageOutcome(index, "failed", report, why, seconds)
    return StageOutcome(index, "passed", report, "", seconds)


def run_curriculum(
    stages: Sequence[int],
    workdir: Path,
    *,
    quick: bool = False,
    seed: int = 0,
    data: Path | None = None,
    keep_going: bool = False,
    say: Say | None = None,
    on_stage: Callable[[StageOutcome], None] | None = None,
) -> CurriculumRun:
    """Each stage in order in ``workdir/stage<k>``; ``workdir/curriculum.json`` rewritten after every stage."""
    import torch

    # small models on shared cores: one thread is what they use well (stage 2's training on a loaded
    # two-core machine: 7.5 s with one thread, 50 s with two)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run(stages, workdir, quick, seed, data, keep_going, say, on_stage)
    finally:
        torch.set_num_threads(threads)


def _run(stages: Sequence[int], workdir: Path, quick: bool, seed: int, data: Path | None, keep_going: bool,
         say: Say | None, on_stage: Callable[[StageOutcome], None] | None) -> CurriculumRun:  # fmt: skip
    from kasmina_edge.host.experiment import atomic_write_json

    say_ = say or (lambda _m: None)
    run = CurriculumRun(list(stages))
    allowance = QUICK_STAGE_S if quick else FULL_STAGE_S
    t0 = time.perf_counter()
    for k, index in enumerate(stages):
        stage = load_stage(index)
        folder = workdir / f"stage{index}"
        folder.mkdir(parents=True, exist_ok=True)
        say_(f"stage {index} ({stage.name}: {stage.domain})")
        ctx = StageContext(workdir=folder, seed=seed, quick=quick, data=data,
                           say=lambda m, i=index: say_(f"stage {i}: {m}"))  # fmt: skip
        t = time.perf_counter()
        try:
            report = stage.run(ctx)
        except KasminaError as exc:
            outcome = StageOutcome(index, "error", None, str(exc), time.perf_counter() - t)
        else:
            report.seconds = report.seconds or time.perf_counter() - t
            outcome = _judge(index, report, time.perf_counter() - t, allowance)
            atomic_write_json(folder / "report.json", report.to_dict())
        run.outcomes.append(outcome)
        run.seconds = time.perf_counter() - t0
        atomic_write_json(workdir / "curriculum.json", run.to_dict())
        if on_stage is not None:
            on_stage(outcome)
        if outcome.status != "passed" and not keep_going:
            for rest in stages[k + 1 :]:
                run.outcomes.append(StageOutcome(rest, "skipped", None, f"stage {index} {outcome.status}"))
            atomic_write_json(workdir / "curriculum.json", run.to_dict())
            break
    return run
