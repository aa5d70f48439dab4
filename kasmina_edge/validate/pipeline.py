"""The stages in order: each gets the shared context; the first failure stops the run unless ``keep_going``.
A stage whose input an earlier stage could not provide (no verified bundle) is skipped, saying why."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kasmina_edge.validate import (
    stage_accuracy,
    stage_artifacts,
    stage_certification,
    stage_device,
    stage_faults,
    stage_fleet,
    stage_robustness,
)
from kasmina_edge.validate.context import ValidationContext
from kasmina_edge.validate.result import StageResult

Stage = tuple[int, str, Callable[[ValidationContext], StageResult]]
STAGES: list[Stage] = [
    (m.INDEX, m.NAME, m.run)
    for m in (stage_artifacts, stage_accuracy, stage_robustness, stage_device, stage_faults, stage_fleet,
              stage_certification)
]
STAGE_NAMES = [name for _, name, _ in STAGES]
NEEDS_IMAGE = {"accuracy", "robustness", "device", "faults"}


@dataclass
class ValidationRun:
    stages: list[StageResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return all(s.status != "fail" for s in self.stages) and any(s.status == "pass" for s in self.stages)

    @property
    def first_failure(self) -> StageResult | None:
        return next((s for s in self.stages if s.status == "fail"), None)

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "seconds": round(self.seconds, 3), "stages": [s.to_dict() for s in self.stages]}


def run_stages(ctx: ValidationContext, *, keep_going: bool = False, only: set[str] | None = None) -> ValidationRun:
    """Run the stages (``only``: these names, stage 0 always) in order."""
    out = ValidationRun()
    ctx.reset_scratch()
    t_all = time.perf_counter()
    stopped: StageResult | None = None
    for index, name, fn in STAGES:
        if only is not None and name not in only and name != "artifacts":
            out.stages.append(StageResult(index, name, "skipped", "not selected"))
            continue
        if stopped is not None:
            out.stages.append(StageResult(index, name, "skipped", f"not run: stage {stopped.index} "
                                          f"({stopped.name}) failed"))
            continue
        if name in NEEDS_IMAGE and ctx.image is None:
            out.stages.append(StageResult(index, name, "skipped", "not run: no verified bundle loaded (stage 0)"))
            continue
        ctx.say(f"stage {index}: {name}")
        t0 = time.perf_counter()
        result = fn(ctx)
        result.seconds = time.perf_counter() - t0
        out.stages.append(result)
        if result.status == "fail" and not keep_going:
            stopped = result
    out.seconds = time.perf_counter() - t_all
    return out
