"""Shared CLI pieces, and the one place that defines the CLI's conventions:

- exit codes: :data:`EXIT_OK` 0, :data:`EXIT_CHECK_FAILED` 1 (a check or a bug), :data:`EXIT_USER_ERROR` 2,
  :data:`EXIT_NOT_AVAILABLE` 3 (this install lacks an optional extra the command needs);
- ``--json`` is a flag on every command (:func:`json_option`): one JSON document on stdout (:func:`emit`), the
  human tables go away (:func:`human`); files a command writes are named by ``--out`` (or ``--report``);
- errors are one line on stderr, or ``{"error": "...", "code": N}`` on stdout under ``--json`` (:func:`error_exit`).
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

console = Console()
err_console = Console(stderr=True)

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_USER_ERROR = 2
EXIT_NOT_AVAILABLE = 3

JSON_HELP = 'Print one JSON document on stdout instead of the tables; errors too, as {"error": ..., "code": N}.'

_json_mode = False  # set per invocation: by the group from argv (before parsing), and by the --json option


def set_json_mode(on: bool) -> None:
    global _json_mode
    _json_mode = on


def json_mode() -> bool:
    return _json_mode


def json_mode_from_args(args: Sequence[str] | None) -> bool:
    """`--json` among the arguments (before any `--`): errors raised while parsing are JSON too."""
    argv = list(sys.argv[1:] if args is None else args)
    return "--json" in (argv[: argv.index("--")] if "--" in argv else argv)


def _json_flag(value: bool) -> bool:
    if value:
        set_json_mode(True)
    return value


def json_option() -> Any:
    """The `--json` flag of every command (one definition, one help line)."""
    return typer.Option(False, "--json", help=JSON_HELP, callback=_json_flag)


def human(as_json: bool) -> Console:
    """The console a command prints its tables to: a discarded one under --json, so stdout holds only JSON."""
    return Console(file=io.StringIO(), width=120) if as_json else console


def jsonable(value: Any) -> Any:
    """Plain JSON types from dataclasses, paths, tuples, sets and anything with to_dict()."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if hasattr(value, "to_dict") and callable(value.to_dict):
        return jsonable(value.to_dict())
    if hasattr(value, "model_dump") and callable(value.model_dump):  # pydantic models
        return jsonable(value.model_dump(mode="json"))
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None  # NaN (a class never seen) is not JSON
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy arrays and scalars, torch tensors
        return jsonable(value.tolist())
    return str(value)


def emit(data: Any) -> None:
    """The command's one JSON document, on stdout."""
    sys.stdout.write(json.dumps(jsonable(data), indent=1, allow_nan=False) + "\n")
    sys.stdout.flush()


def error_exit(message: str, code: int = EXIT_USER_ERROR) -> NoReturn:
    """One line (whitespace folded) on stderr, or {"error", "code"} on stdout under --json; exit ``code``."""
    line = " ".join(message.split())
    if json_mode():
        emit({"error": line, "code": code})
    else:
        label = "error" if code != EXIT_NOT_AVAILABLE else "not available"
        err_console.print(f"[bold red]{label}:[/] {escape(line)}", highlight=False, soft_wrap=True)
    sys.exit(code)


def fail(message: str) -> NoReturn:
    """Print one clear line and exit 2 (for errors a user caused)."""
    error_exit(message, EXIT_USER_ERROR)
