"""What a stage (or a compliance check) found: pass, fail or skipped, one line saying why, the evidence."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["pass", "fail", "skipped"]


@dataclass
class StageResult:
    index: int
    name: str
    status: Status
    reason: str  # one line: why it passed, failed or was skipped
    criteria: dict[str, Any] = field(default_factory=dict)  # the plan's pass criteria for this stage
    metrics: dict[str, Any] = field(default_factory=dict)  # what was measured (numbers, per record)
    failures: list[str] = field(default_factory=list)  # every criterion missed, one line each
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "name": self.name,
            "status": self.status,
            "reason": self.reason,
            "criteria": self.criteria,
            "failures": list(self.failures),
            "metrics": self.metrics,
            "seconds": round(self.seconds, 3),
        }


def judged(index: int, name: str, failures: list[str], ok_reason: str, **kw: Any) -> StageResult:
    """A stage's verdict from its list of missed criteria: the first one is the stage's one-line reason."""
    if failures:
        more = f" (+{len(failures) - 1} more)" if len(failures) > 1 else ""
        return StageResult(index, name, "fail", failures[0] + more, failures=failures, **kw)
    return StageResult(index, name, "pass", ok_reason, **kw)


def plain(value: Any) -> Any:
    """Strict-JSON values: NaN and infinities as None, numpy scalars and arrays as numbers and lists."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, bool | int | str):
        return value
    if hasattr(value, "tolist"):
        return plain(value.tolist())
    return str(value)
