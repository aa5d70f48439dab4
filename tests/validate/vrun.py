"""Run the validation stages in process, as the CLI runs them (helpers for the tests)."""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def run_pipeline(bundle: Path, records: Path, plan: Path, keys: Path, work: Path, *, keep_going: bool = False,
                 only: set[str] | None = None, link: str | None = None, profile: str | None = None) -> tuple:
    """(the run, its context): the stages in process, as the CLI runs them."""
    from kasmina_edge.validate.context import ValidationContext
    from kasmina_edge.validate.pipeline import run_stages
    from kasmina_edge.validate.plan import load_plan
    from kasmina_edge.validate.records import resolve_records

    ctx = ValidationContext(bundle_path=bundle, plan=load_plan(plan), records=resolve_records(f"wfdb:{records}"),
                            workdir=work, keys=keys, link=link, profile_name=profile)
    return run_stages(ctx, keep_going=keep_going, only=only), ctx


def stage(run, name: str):  # type: ignore[no-untyped-def]
    return next(s for s in run.stages if s.name == name)
