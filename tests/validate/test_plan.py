"""The validation plan: the shipped one loads; a typo or a bad value is one line naming the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from kasmina_edge.validate.plan import PLAN_SCHEMA, PlanError, load_plan, write_default_plan


def test_the_shipped_plan_loads_and_a_copy_reads_back_the_same(tmp_path: Path) -> None:
    plan = load_plan()
    assert plan.plan_schema == PLAN_SCHEMA and plan.version == 1
    assert plan.accuracy.exclude_first_s == 300.0  # AAMI: the first 5 minutes are left out
    assert plan.accuracy.class_floors["N"].se == 0.90 and plan.faults.events and not plan.fleet.enabled
    copy = load_plan(write_default_plan(tmp_path / "plan.toml"))
    assert copy.model_dump() == plan.model_dump() and copy.source.endswith("plan.toml")


@pytest.mark.parametrize(("text", "message"), [
    ("[accuracy]\nmacro_f1_min = 1.5\n", "accuracy.macro_f1_min: Input should be less than or equal to 1"),
    ("[accuracy]\nmacro_f1_mn = 0.5\n", "accuracy.macro_f1_mn: Extra inputs are not permitted"),
    ('schema = "kasmina-validate-plan/9"\n', "is not 'kasmina-validate-plan/1'"),
    ("[device\n", "not valid TOML"),
    ("[robustness]\nstretch_s = 0\n", "robustness.stretch_s: Input should be greater than 0"),
])  # fmt: skip
def test_a_bad_plan_is_one_line_naming_the_field(tmp_path: Path, text: str, message: str) -> None:
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(PlanError) as exc:
        load_plan(p)
    assert message in str(exc.value) and str(p) in str(exc.value) and "\n" not in str(exc.value)


def test_a_missing_plan_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="no such file"):
        load_plan(tmp_path / "none.toml")
