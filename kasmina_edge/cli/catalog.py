"""`kasmina-edge profiles` and `kasmina-edge targets` (placeholder until the catalog lands)."""

from __future__ import annotations

import typer

from kasmina_edge.cli.common import fail

profiles_app = typer.Typer(help="Hardware and network profiles.", no_args_is_help=True)
targets_app = typer.Typer(help="Build targets (edgetpu, cortex-m, linux-arm, x86).", no_args_is_help=True)


@profiles_app.command("list")
def profiles_list() -> None:
    fail("profiles are not available yet (issue 2)")


@targets_app.command("list")
def targets_list() -> None:
    fail("targets are not available yet (issue 2)")
