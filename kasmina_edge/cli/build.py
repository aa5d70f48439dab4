"""`kasmina-edge build`: ahead-of-time build of a checkpoint and its seed library for one target.

torch, litert-torch and onnxruntime's quantizer are imported inside the command only.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console

from kasmina_edge.cli import checks
from kasmina_edge.cli.common import emit, err_console, human, json_option

if TYPE_CHECKING:
    from kasmina_edge.compile.pipeline import BuildResult

TARGETS = ("edgetpu", "cortex-m", "linux-arm", "x86")


def build(
    checkpoint: Path = typer.Option(
        ..., "--checkpoint", help="Base checkpoint from `kasmina-edge train`.", callback=checks.existing_checkpoint
    ),
    seeds: Path = typer.Option(
        None, "--seeds", help="Seed library folder from `kasmina-edge morph` (omit: base only).",
        callback=checks.input_dir,
    ),
    target: str = typer.Option(..., "--target", help="edgetpu, cortex-m, linux-arm or x86."),  # run_build checks it
    profile: str = typer.Option(None, "--profile", help="Hardware profile (default: the target's)."),
    bits: int = typer.Option(
        8, "--bits", help="Seed kernel weights: 8 (PTQ int8) or 4 (Brevitas QAT, packed).",
        callback=checks.one_of_ints(8, 4),
    ),
    out: Path = typer.Option(
        None, "--out", help="Bundle to write (default: <target>.kedge).", callback=checks.output_file(".kedge")
    ),
    explain: bool = typer.Option(False, "--explain", help="Show the build plan and stop."),
    keys: Path = typer.Option(
        None, "--keys", help="Signing keys folder from `kasmina-edge keys init`.", callback=checks.input_path
    ),
    report: Path = typer.Option(
        None, "--report", help="Also write the build report as a JSON file here (was `--json PATH`).",
        callback=checks.output_file(".json"),
    ),
    as_json: bool = json_option(),
    strict: bool = typer.Option(
        False,
        "--strict",
        help="Release builds: a missed parity bound (argmax agreement with torch, logit error) is an error "
        "and no bundle is written. Without it the bundle is written with a warning and the miss is recorded "
        "in its manifest.",
    ),
    allow_parity_miss: bool = typer.Option(
        False, "--allow-parity-miss", hidden=True, help="Deprecated: the default now (see --strict)."
    ),
    version: int = typer.Option(
        None,
        "--version",
        min=1,
        help="Bundle version (devices refuse one not above their security counter). Default: one more than "
        "the newest the keys folder signed for this target (recorded in its signed-versions.json).",
    ),
) -> None:
    """Quantize, split at the seed sites, export and check for one target; write a signed bundle.
    --json prints the build report (with --explain: the plan) as JSON instead of the tables."""
    run_build(
        human(as_json),
        checkpoint=checkpoint,
        seeds=seeds,
        target=target,
        profile=profile,
        bits=bits,
        out=out,
        explain=explain,
        keys=keys,
        json_out=report,
        strict=strict,
        allow_parity_miss=allow_parity_miss,
        version=version,
        as_json=as_json,
    )


def run_build(
    con: Console,
    *,
    checkpoint: Path,
    seeds: Path | None,
    target: str,
    profile: str | None = None,
    bits: int = 8,
    out: Path | None = None,
    explain: bool = False,
    keys: Path | None = None,
    json_out: Path | None = None,
    strict: bool = False,
    allow_parity_miss: bool = False,
    version: int | None = None,
    as_json: bool = False,
) -> None:
    from kasmina_edge.core.build_errors import BuildError, UnknownTargetError

    if strict and allow_parity_miss:
        raise BuildError("--strict and --allow-parity-miss contradict each other; give one")
    if allow_parity_miss:  # kept so scripts written for it still run
        err_console.print(
            "[dim]--allow-parity-miss is the default now; it will go (release builds: --strict)[/]"
        )
    if target not in TARGETS:
        raise UnknownTargetError(f"--target: unknown {target!r}; choose one of: {', '.join(TARGETS)}")
    if bits not in (4, 8):
        raise UnknownTargetError(f"--bits: {bits} is not supported; use 8 or 4")
    from kasmina_edge.compile.pipeline import BuildRequest, build, plan

    req = BuildRequest(
        checkpoint=checkpoint,
        seeds=seeds,
        target=target,
        profile=profile,
        bits=bits,
        out=out,
        keys=keys,
        strict=strict,
        version=version,
    )
    from kasmina_edge.cli.tables import FitToWidth

    the_plan = plan(req)
    if explain:
        if as_json:
            emit(plan_json(the_plan))
            return
        the_plan.render(FitToWidth(con))  # type: ignore[arg-type]  # tables reflowed to the width
        return
    result = build(req, con)
    result.report.render(FitToWidth(con))  # type: ignore[arg-type]
    print_parity_warnings(result)
    if json_out is not None:
        import json

        from kasmina_edge.host.experiment import atomic_write_json

        json_out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(json_out, json.loads(json.dumps(result.report.to_dict(), default=str)))
        con.print(f"report: {json_out}")
    if as_json:
        emit({"bundle": str(result.bundle) if result.bundle else None, "report": result.report.to_dict(),
              "parity_misses": result.parity_misses})


def plan_json(the_plan: Any) -> dict[str, Any]:
    """What --explain shows, as plain JSON."""
    return {"target": the_plan.target.name, "profile": the_plan.profile.name, "format": the_plan.format,
            "model": the_plan.model_name,
            "sites": [{"name": n, "channels": c, "length": ln} for n, c, ln in the_plan.sites],
            "base_parameters": the_plan.base_parameters, "kernels": the_plan.kernels, "steps": the_plan.steps,
            "estimated_bytes": the_plan.estimated_bytes, "pending": the_plan.pending}


def print_parity_warnings(result: BuildResult, con: Console = err_console) -> None:
    """One yellow line per missed parity bound of a (non-strict) build that wrote its bundle anyway."""
    for line in result.parity_misses:
        con.print(f"[bold yellow]warning:[/] {line}", highlight=False, soft_wrap=True)


def demo_step(con: Console, workdir: Path) -> None:
    """Build the demo's tiny model (from the host step) for the Edge TPU."""
    from kasmina_edge.contracts.bundle import PRIVATE_KEY_NAME, init_keys

    host = workdir / "host"
    checkpoint, seeds = host / "base.pt", host / "seeds"
    keys = workdir / "keys"  # the demo signs with its own key pair; the device step verifies with it
    if not (keys / PRIVATE_KEY_NAME).exists():
        init_keys(keys)
    run_build(
        con,
        checkpoint=checkpoint,
        seeds=seeds if (seeds / "library.json").exists() else None,
        target="edgetpu",
        out=workdir / "build" / "demo-edgetpu.kedge",
        keys=keys,
    )


def register(app: typer.Typer) -> None:
    app.command(name="build", help="Ahead-of-time build per target into a signed bundle (see --explain).")(
        build
    )
