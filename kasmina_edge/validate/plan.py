"""The validation plan: which stages run and the pass criteria of each, read from a versioned TOML file.

The package ships ``default_plan.toml``; a user copies it (``validate --write-plan FILE``), edits it and passes
it with ``--plan FILE``. Unknown keys are refused (a typo would otherwise silently keep a default), and a bad
value is one line naming the file and the field.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kasmina_edge.contracts.errors import KasminaError

PLAN_SCHEMA = "kasmina-validate-plan/1"
DEFAULT_PLAN_NAME = "default_plan.toml"


class PlanError(KasminaError):
    """A plan file that cannot be read or holds a bad value."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClassFloor(_Strict):
    se: float = Field(default=0.0, ge=0.0, le=1.0)
    ppv: float = Field(default=0.0, ge=0.0, le=1.0)


class ArtifactsPlan(_Strict):
    reference_rows_min: int = Field(default=1, ge=0)


class AccuracyPlan(_Strict):
    exclude_first_s: float = Field(default=300.0, ge=0.0)
    qrs_se_min: float = Field(default=0.99, ge=0.0, le=1.0)
    qrs_ppv_min: float = Field(default=0.99, ge=0.0, le=1.0)
    macro_f1_min: float = Field(default=0.45, ge=0.0, le=1.0)
    min_support: int = Field(default=20, ge=0)
    max_kernel_drop: float = Field(default=0.02, ge=0.0, le=1.0)
    class_floors: dict[str, ClassFloor] = Field(default_factory=dict)


class RobustnessPlan(_Strict):
    noise: list[str] = Field(default_factory=lambda: ["ma", "bw"])
    snr_db: list[float] = Field(default_factory=lambda: [12.0, 6.0, 0.0])
    noise_folder: str = ""
    first_clean_s: float = Field(default=300.0, ge=0.0)
    stretch_s: float = Field(default=120.0, gt=0.0)
    lead_change: bool = True
    max_seed_loss: float = Field(default=0.005, ge=0.0, le=1.0)


class DevicePlan(_Strict):
    per_beat_budget_s: float = Field(default=0.005, gt=0.0)
    decision_budget_s: float = Field(default=0.050, gt=0.0)
    sram_fraction_max: float = Field(default=0.9, gt=0.0)
    flash_fraction_max: float = Field(default=0.9, gt=0.0)
    battery_days_min: float = Field(default=1.0, ge=0.0)
    emulator_seconds: float = Field(default=120.0, gt=0.0)


class FaultsPlan(_Strict):
    link: str = "nb-iot"
    events: list[str] = Field(default_factory=list)
    drain_s: float = Field(default=600.0, ge=0.0)
    power_cut_during_flash: bool = True
    nan_kernel: bool = True
    corrupted_ota_chunk: bool = True
    rollback_windows: int = Field(default=1, ge=1)


class FleetPlan(_Strict):
    enabled: bool = False


class CertificationPlan(_Strict):
    required: list[str] = Field(default_factory=list)


class Plan(_Strict):
    plan_schema: str = Field(default=PLAN_SCHEMA, alias="schema")
    version: int = Field(default=1, ge=1)
    artifacts: ArtifactsPlan = ArtifactsPlan()
    accuracy: AccuracyPlan = AccuracyPlan()
    robustness: RobustnessPlan = RobustnessPlan()
    device: DevicePlan = DevicePlan()
    faults: FaultsPlan = FaultsPlan()
    fleet: FleetPlan = FleetPlan()
    certification: CertificationPlan = CertificationPlan()
    source: str = Field(default="default", exclude=True)

    def criteria(self, section: str) -> dict[str, Any]:
        """One stage's criteria as plain values (for the report)."""
        return dict(getattr(self, section).model_dump(mode="json"))


def default_plan_text() -> str:
    return resources.files("kasmina_edge.validate").joinpath(DEFAULT_PLAN_NAME).read_text(encoding="utf-8")


def _field(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def parse_plan(text: str, source: str = "default") -> Plan:
    """A plan from TOML text; one line naming ``source`` and the field on any problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PlanError(f"{source}: not valid TOML ({exc})") from None
    schema = data.get("schema", PLAN_SCHEMA)
    if schema != PLAN_SCHEMA:
        raise PlanError(f"{source}: schema {schema!r} is not {PLAN_SCHEMA!r} (an older or newer plan)")
    try:
        plan = Plan.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise PlanError(f"{source}: {_field(err['loc'])}: {err['msg']}") from None
    return plan.model_copy(update={"source": source})


def load_plan(path: Path | None = None) -> Plan:
    """The plan in ``path``, else the shipped default."""
    if path is None:
        return parse_plan(default_plan_text(), "default plan")
    if not path.is_file():
        raise PlanError(f"--plan {path}: no such file")
    return parse_plan(path.read_text(encoding="utf-8"), str(path))


def write_default_plan(out: Path) -> Path:
    """Copy the shipped plan to ``out`` (atomically), for the user to edit."""
    import os
    import tempfile

    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(default_plan_text())
    os.replace(tmp, out)
    return out
