"""`kasmina-edge validate` and `kasmina-edge certify`.

    kasmina-edge validate bundle.kedge --data wfdb:../shared/data/mitdb --records 100 --report report.html
    kasmina-edge validate bundle.kedge --data wfdb:DIR --plan plan.toml --keep-going --json
    kasmina-edge validate bundle.kedge --kernels seed-100.kedge --data wfdb:../shared/data/mitdb --records 100
    kasmina-edge validate --write-plan plan.toml            # the shipped plan, to edit
    kasmina-edge validate --verify-report report.html.sig   # check a signed report
    kasmina-edge certify bundle.kedge --logs runs/ --config certify.toml [--erase PATIENT] [--json]

Exit codes: 0 every stage / check passed, 1 one failed, 2 a user error. The work is in ``kasmina_edge.validate``
(imported inside the commands).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from kasmina_edge.cli import checks
from kasmina_edge.cli.common import EXIT_CHECK_FAILED, emit, fail, human, json_option

STATUS_STYLE = {"pass": "[green]pass[/]", "fail": "[bold red]FAIL[/]", "skipped": "[dim]skipped[/]"}


def _stage_table(stages: list[Any]) -> Table:
    t = Table(title="validation stages", title_justify="left")
    t.add_column("#", justify="right")
    t.add_column("stage")
    t.add_column("result")
    t.add_column("why", overflow="fold")
    t.add_column("time", justify="right")
    for s in stages:
        t.add_row(str(s.index), s.name, STATUS_STYLE[s.status], s.reason, f"{s.seconds:.1f} s")
    return t


def _check_table(checks_: list[Any]) -> Table:
    t = Table(title="compliance checks (a checklist tool, not a certification)", title_justify="left")
    t.add_column("check", overflow="fold")
    t.add_column("requirement", overflow="fold")
    t.add_column("result")
    t.add_column("evidence", overflow="fold")
    for c in checks_:
        t.add_row(c.id, "\n".join(c.requirements), STATUS_STYLE[c.status], c.evidence)
    return t


def run_validate(
    con: Console, bundle: Path, data: str, *, records: str | None, profile: str | None, link: str | None,
    plan_path: Path | None, report: Path | None, keys: Path | None, keep_going: bool, workdir: Path | None,
    only: set[str] | None = None, kernels: list[Path] | None = None, noise: Path | None = None,
) -> tuple[Any, dict[str, Any], dict[str, Path]]:
    from kasmina_edge.core.catalog import hardware, network
    from kasmina_edge.validate.context import ValidationContext
    from kasmina_edge.validate.pipeline import run_stages
    from kasmina_edge.validate.plan import load_plan
    from kasmina_edge.validate.records import resolve_records
    from kasmina_edge.validate.report_html import document, write_report

    plan = load_plan(plan_path)
    if noise is not None:  # --noise DIR: the plan's robustness noise from this NSTDB-style folder
        plan = plan.model_copy(update={"robustness": plan.robustness.model_copy(update={"noise_folder": str(noise)})})
    refs = resolve_records(data, records)
    if profile is not None:
        hardware(profile)  # an unknown name: one line with the known ones, before any work
    if link is not None:
        network(link.partition(":")[0])
    with tempfile.TemporaryDirectory(prefix="kasmina-validate-") as tmp:
        work = workdir or Path(tmp)
        ctx = ValidationContext(bundle_path=bundle, plan=plan, records=refs, workdir=work, keys=keys,
                                profile_name=profile, link=link, kernel_paths=list(kernels or []),
                                say=lambda m: con.print(f"[dim]{m}[/]"))
        result = run_stages(ctx, keep_going=keep_going, only=only)
        doc = document(result, ctx)
        written: dict[str, Path] = {}
        if report is not None:
            written = write_report(doc, ctx.figures, report, keys, plan.device.per_beat_budget_s)
    return result, doc, written


def validate(
    bundle: Path = typer.Argument(None, help="The signed bundle (.kedge) to validate."),
    data: str = typer.Option(None, "--data", help="Annotated records: wfdb:DIR[,DIR] (folders or record paths)."),
    records: str = typer.Option(None, "--records", help="Only these records of --data, comma-separated (e.g. 100,101)."),
    profile: str = typer.Option(None, "--profile", help="Hardware profile (default: the bundle's)."),
    link: str = typer.Option(None, "--link", help="Network profile for stage 4 (NAME or NAME:FAULTS; default: the plan's)."),
    plan: Path = typer.Option(None, "--plan", help="Validation plan (TOML; default: the shipped one).",
                              callback=checks.input_file),
    report: Path = typer.Option(None, "--report", help="Write the signed HTML report here (JSON and .sig beside it).",
                                callback=checks.output_file(".html")),
    keys: Path = typer.Option(None, "--keys", help="Keys folder: verifies the bundle, signs the report."),
    kernels: list[Path] = typer.Option(None, "--kernels", help="A kernel-only bundle (a patient's seeds) to install "
                                       "on the base, as `flash` does; repeatable.", callback=checks.list_of(checks.input_file)),
    noise: Path = typer.Option(None, "--noise", help="NSTDB-style noise folder for stage 2 (holds the plan's "
                               "noise records, e.g. ma, bw; default ../shared/data/nstdb).", callback=checks.input_dir),
    keep_going: bool = typer.Option(False, "--keep-going", help="Run every stage even after one failed."),
    stages: str = typer.Option(None, "--stages", help="Only these stages (comma-separated names; artifacts always)."),
    workdir: Path = typer.Option(None, "--workdir", help="Keep the run's devices and sealed logs here (its devices/ and logs/ are emptied first)."),
    write_plan: Path = typer.Option(None, "--write-plan", help="Write the shipped plan to this file and stop.",
                                    callback=checks.output_file(".toml")),
    verify_report: Path = typer.Option(None, "--verify-report", help="Check a report's .sig file and stop.",
                                       callback=checks.input_file),
    as_json: bool = json_option(),
) -> None:
    """Take a bundle through the validation stages (artifacts, accuracy, robustness, device, faults, fleet,
    certification) with the plan's pass criteria; exit 0 when all pass, 1 when one failed."""
    con = human(as_json)
    if write_plan is not None:
        from kasmina_edge.validate.plan import write_default_plan

        con.print(f"plan: {write_default_plan(write_plan)}")
        if as_json:
            emit({"plan": str(write_plan)})
        return
    if verify_report is not None:
        from kasmina_edge.validate.report_signing import verify_files

        sig = verify_files(verify_report, keys)
        con.print(f"report signature verifies (key {sig['key_id']}): {', '.join(sig['files'])}")
        if as_json:
            emit({"verified": True, "key_id": sig["key_id"], "files": sig["files"]})
        return
    if bundle is None:
        fail("give the bundle to validate (kasmina-edge validate BUNDLE --data wfdb:DIR)")
    if not bundle.is_file():
        fail(f"{bundle}: no such bundle")
    if data is None:
        fail("--data wfdb:DIR[,DIR] is required: the annotated records to validate on")
    only = None
    if stages:
        from kasmina_edge.validate.pipeline import STAGE_NAMES

        only = {s.strip() for s in stages.split(",") if s.strip()}
        unknown = sorted(only - set(STAGE_NAMES))
        if unknown:
            fail(f"--stages {', '.join(unknown)}: unknown (stages: {', '.join(STAGE_NAMES)})")
    result, doc, written = run_validate(con, bundle, data, records=records, profile=profile, link=link,
                                        plan_path=plan, report=report, keys=keys, keep_going=keep_going,
                                        workdir=workdir, only=only, kernels=kernels, noise=noise)
    con.print(_stage_table(result.stages))
    for name, path in written.items():
        con.print(f"{name}: {path}")
    if as_json:
        from kasmina_edge.validate.result import plain

        emit(plain({**doc, "files": {k: str(v) for k, v in written.items()}}))
    if not result.passed:
        raise typer.Exit(EXIT_CHECK_FAILED)


def certify(
    bundle: Path = typer.Argument(None, help="A signed bundle to check (optional)."),
    logs: Path = typer.Option(None, "--logs", help="Folder of logs to scan (run logs, telemetry, audit logs).",
                              callback=checks.input_dir),
    config: Path = typer.Option(None, "--config", help="Deployment config (TOML: brokers, ACL, keys, store, patients).",
                                callback=checks.input_file),
    erase: str = typer.Option(None, "--erase", help="Erase this patient's data from the monitor store and prove it."),
    keys: Path = typer.Option(None, "--keys", help="Keys folder that verifies bundles (default: the keys folder)."),
    sbom: Path = typer.Option(None, "--sbom", help="Write the CycloneDX SBOM here (default: sbom.cdx.json).",
                              callback=checks.output_file(".json")),
    as_json: bool = json_option(),
) -> None:
    """Compliance checklist: each check mapped to a HIPAA safeguard, GDPR article or IEC activity, with its
    evidence. A checklist tool, not a certification. Exit 0 when none fails, 1 when one fails."""
    from kasmina_edge.validate.certify import SCOPE, CertifyInputs, load_config, run_checks

    if bundle is not None and not bundle.is_file():
        fail(f"{bundle}: no such bundle")
    if erase is not None and not erase.strip():
        fail("--erase: give the patient's id")
    cfg, base = load_config(config)
    con = human(as_json)
    rep = run_checks(CertifyInputs(bundle=bundle, keys=keys, logs=logs, config=cfg, base=base, erase=erase,
                                   sbom_out=sbom or Path("sbom.cdx.json")))
    con.print(_check_table(rep.checks))
    con.print(f"[dim]{SCOPE}[/]")
    if as_json:
        emit(rep.to_dict())
    if not rep.passed:
        raise typer.Exit(EXIT_CHECK_FAILED)


def register(app: typer.Typer) -> None:
    app.command(name="validate", help="Validate a bundle through stages 0-6 (artifacts, accuracy, robustness, device, "
                "faults, fleet, certification) with a plan's pass criteria; exit 1 when a stage fails.")(validate)
    app.command(name="certify", help="Compliance checklist on a bundle, logs and configuration, each check mapped to "
                "a HIPAA / GDPR / IEC requirement (a checklist tool, not a certification); exit 1 when one fails.")(certify)
