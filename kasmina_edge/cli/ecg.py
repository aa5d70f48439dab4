"""`kasmina-edge ecg` (placeholder until the ECG layer lands)."""

from __future__ import annotations

import typer

from kasmina_edge.cli.common import fail

app = typer.Typer(help="ECG data: synthesize, plot, stats.", no_args_is_help=True)


@app.command("synth")
def synth() -> None:
    fail("ecg synth is not available yet (issue 3)")
