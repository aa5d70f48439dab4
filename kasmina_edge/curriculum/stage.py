"""What every curriculum stage is and returns: one domain, its metric, its target, and three arms side by side.

A stage earns its place only if its base is *short* of the target before any seed is grown (otherwise
seeds have nothing to show); it passes when the base with seeds reaches the target. Full fine-tuning of
every weight on the same data is the upper bound a seed is compared with, and its parameter count the
cost a seed avoids.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

Say = Callable[[str], None]


@dataclass
class ArmScore:
    """One arm of a stage: its metric on the stage's held-out data and what it cost."""

    metric: float
    params: int  # base: the base's parameters; seeds: parameters the seeds added; fine-tuning: parameters trained
    detail: dict[str, Any] = field(default_factory=dict)  # the arm's own figures (per shift, per class, ...)


@dataclass
class StageReport:
    index: int
    name: str
    domain: str
    metric: str  # what the arms' ``metric`` is, e.g. "accuracy", "R@1", "cluster purity"
    target: float  # the success criterion, on ``seeded.metric`` (higher is better)
    base: ArmScore
    seeded: ArmScore
    fine_tuned: ArmScore | None
    lifecycle: list[dict[str, Any]] = field(default_factory=list)  # the seeds' lifecycle events, in order
    checks: dict[str, bool] = field(default_factory=dict)  # named criteria (guardrails included); all must hold
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def base_short_of_target(self) -> bool:
        return self.base.metric < self.target

    @property
    def passed(self) -> bool:
        return self.base_short_of_target and self.seeded.metric >= self.target and all(self.checks.values())

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["base_short_of_target"] = self.base_short_of_target
        d["passed"] = self.passed
        return d


@dataclass(frozen=True)
class StageContext:
    """What the runner hands a stage."""

    workdir: Path  # the stage's own folder (artifacts, its JSON)
    seed: int = 0
    quick: bool = False  # a smaller run (tests, CI's slow tier): same code, fewer samples and epochs
    data: Path | None = None  # real data's folder (../shared/data layout: mitdb/, nstdb/); None: synthetic only
    say: Say = lambda _msg: None  # one line of progress


class CurriculumStage(Protocol):
    index: int
    name: str
    domain: str

    def run(self, ctx: StageContext) -> StageReport: ...
