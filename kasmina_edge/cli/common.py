"""Shared CLI pieces: consoles, the one-line error path, placeholders for commands not built yet."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)

EXIT_USER_ERROR = 2


def fail(message: str) -> NoReturn:
    """Print one clear line and exit non-zero (for errors a user caused)."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_USER_ERROR)


def add_pending(app: typer.Typer, name: str, issue: int, what: str) -> None:
    """Register a command another issue will build: it accepts any arguments and says so."""

    @app.command(
        name=name,
        help=f"{what} (not available yet: issue {issue})",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    )
    def _pending(ctx: typer.Context) -> None:
        fail(f"`kasmina-edge {name}` is not available yet ({what}: issue {issue})")
