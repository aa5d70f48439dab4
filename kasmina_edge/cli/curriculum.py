"""`kasmina-edge curriculum`: the engine exercised beyond ECG, stage by stage.

    kasmina-edge curriculum list
    kasmina-edge curriculum run --stages 0-6 --out runs/curriculum [--quick] [--keep-going] [--data ../shared/data]

Each stage reports its base, the base with seeds and full fine-tuning side by side; the run stops at the first
stage that fails its criteria (``--keep-going`` runs the rest). torch and the stages' libraries are imported
inside the command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from kasmina_edge.cli.common import EXIT_CHECK_FAILED, emit, human, json_option

app = typer.Typer(help="Curriculum stages 0-6: toy sets, corrupted digits, ECG, retrieval, edge deployment.",
                  no_args_is_help=True)  # fmt: skip

_STATUS_STYLE = {"passed": "green", "failed": "red", "error": "red", "over_time": "yellow", "skipped": "dim"}


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def outcome_table(outcomes: list[Any]) -> Table:
    """One row per stage; why a stage failed goes in the caption (a narrow terminal keeps the figures readable)."""
    t = Table(title="curriculum: base vs base + seeds vs full fine-tuning (held-out data)", title_justify="left",
              caption_justify="left")  # fmt: skip
    t.add_column("stage", no_wrap=True)
    t.add_column("metric", ratio=1)
    for col in ("target", "base", "seeds", "tuned", "seed p."):
        t.add_column(col, justify="right", no_wrap=True)
    t.add_column("status", no_wrap=True)
    why = []
    for o in outcomes:
        r = o.report
        status = f"[{_STATUS_STYLE.get(o.status, '')}]{o.status}[/]"
        if o.reason:
            why.append(f"stage {o.index}: {o.reason}")
        if r is None:
            t.add_row(str(o.index), "", "", "", "", "", "", status)
            continue
        ft = r.fine_tuned.metric if r.fine_tuned is not None else None
        t.add_row(str(r.index), f"{r.name}: {r.metric}", _fmt(r.target), _fmt(r.base.metric), _fmt(r.seeded.metric),
                  _fmt(ft), f"{r.seeded.params:,}", status)  # fmt: skip
    t.caption = "\n".join(why) or None
    return t


@app.command("list")
def list_stages(as_json: bool = json_option()) -> None:
    """The stages and where each lives."""
    from kasmina_edge.curriculum.registry import STAGES

    if as_json:
        emit({str(k): v for k, v in STAGES.items()})
        return
    t = Table(title="curriculum stages", title_justify="left")
    t.add_column("stage")
    t.add_column("module")
    for k, v in STAGES.items():
        t.add_row(str(k), v)
    human(as_json).print(t)


@app.command("run")
def run(
    stages: str = typer.Option("0-6", "--stages", help="Stages to run: 0-6, 2, 0,2,4-5."),
    out: Path = typer.Option(
        Path("runs/curriculum"), "--out", help="Folder for curriculum.json and stage<k>/."
    ),
    quick: bool = typer.Option(False, "--quick", help="Smaller runs (same code): what tests and CI use."),
    keep_going: bool = typer.Option(False, "--keep-going", help="Run every stage even after one fails."),
    data: Path = typer.Option(None, "--data", help="Real data folder (mitdb/, nstdb/) for the ECG stage; default ../shared/data or $KASMINA_DATA when there, else synthetic."),
    seed: int = typer.Option(0, "--seed", help="Seed of every stage's data and training."),
    as_json: bool = json_option(),
) -> None:
    """Run the stages in order; exit 1 when one fails its criteria."""
    from kasmina_edge.contracts.errors import KasminaError
    from kasmina_edge.curriculum.registry import parse_stages
    from kasmina_edge.curriculum.runner import run_curriculum
    from kasmina_edge.ecg.data import data_root

    picked = parse_stages(stages)
    if data is not None and not data.is_dir():
        raise KasminaError(f"--data: {data} is not a folder")
    if data is None and (data_root() / "mitdb").is_dir() and (data_root() / "nstdb").is_dir():
        data = data_root()  # beside the checkout, or $KASMINA_DATA
    if out.exists() and not out.is_dir():
        raise KasminaError(f"--out: {out} exists and is not a folder")
    con = human(as_json)
    result = run_curriculum(picked, out, quick=quick, seed=seed, data=data, keep_going=keep_going,
                            say=lambda m: con.print(f"[dim]{m}[/]"),
                            on_stage=lambda o: con.print(f"stage {o.index}: {o.status} {o.reason}".rstrip()))  # fmt: skip
    if as_json:
        emit(result.to_dict())
    else:
        con.print(outcome_table(result.outcomes))
        con.print(f"reports: {out / 'curriculum.json'} and {out}/stage<k>/report.json")
    if not result.passed:
        raise typer.Exit(EXIT_CHECK_FAILED)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="curriculum")
