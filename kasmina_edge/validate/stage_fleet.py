"""Stage 5, fleet: N emulated devices on a real broker. Needs the fleet issue: reported as skipped."""

from __future__ import annotations

from kasmina_edge.validate.context import ValidationContext
from kasmina_edge.validate.result import StageResult

INDEX, NAME = 5, "fleet"


def run(ctx: ValidationContext) -> StageResult:
    return StageResult(INDEX, NAME, "skipped", "not run (needs the fleet issue)", criteria=ctx.plan.criteria("fleet"))
