"""The typer application: every subcommand of the product, registered in one place."""

from __future__ import annotations

import os
import sys
from typing import Any, NoReturn

import typer
from rich.markup import escape
from typer.core import TyperGroup

from kasmina_edge import __version__
from kasmina_edge.cli import (
    build,
    catalog,
    curriculum,
    dashboard,
    demo,
    device,
    ecg,
    evaluate,
    fleet,
    host,
    keys,
    net,
    profile,
    tune,
    validate,
)
from kasmina_edge.cli.common import (
    EXIT_CHECK_FAILED,
    EXIT_NOT_AVAILABLE,
    EXIT_USER_ERROR,
    emit,
    err_console,
    error_exit,
    json_mode,
    json_mode_from_args,
    set_json_mode,
)
from kasmina_edge.cli.home import apply_home
from kasmina_edge.contracts.errors import KasminaError, MissingExtraError


class OneLineErrors(TyperGroup):
    """The app's top group: a bad or missing option (typer/click's checks and ours, all before any work) is
    one line on stderr and exit 2, not a usage panel; the same under `CliRunner` as from the console script."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        set_json_mode(json_mode_from_args(args[0] if args else kwargs.get("args")))
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        from typer._click import exceptions as click_exc
        from typer.exceptions import Abort

        try:
            rv = super().main(*args, standalone_mode=False, **kwargs)
        except click_exc.NoArgsIsHelpError as exc:  # `kasmina-edge` or `kasmina-edge ecg` alone: the help
            from typer import rich_utils

            rich_utils.rich_format_error(exc)
            sys.exit(exc.exit_code)
        except click_exc.UsageError as exc:
            hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
            _error(exc.format_message() + hint)
        except click_exc.ClickException as exc:
            _error(exc.format_message())
        except Abort:
            err_console.print("aborted")
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) and not isinstance(rv, bool) else 0)


def _error(message: str) -> NoReturn:
    """One red line (whitespace folded, [brackets] in values not read as markup), or JSON under --json; exit 2."""
    error_exit(message, EXIT_USER_ERROR)


app = typer.Typer(
    cls=OneLineErrors,
    name="kasmina-edge",
    help="Grow and adapt small ECG networks from host to edge device.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        print(f"kasmina-edge {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
    verbose: bool = typer.Option(
        False, "--verbose", help="Show third-party log output (TensorFlow, absl, torchao), silenced by default."
    ),
) -> None:
    """kasmina-edge: train → morph → build → flash → run.

    Keys live in ~/.config/kasmina-edge/keys, emulated devices, command keys and the audit log under
    ~/.local/share/kasmina-edge; KASMINA_HOME=DIR moves all of them into DIR.
    """
    apply_home()
    if verbose:  # read where the noisy libraries are imported (contracts.optional), inside the commands
        os.environ["KASMINA_VERBOSE"] = "1"


app.add_typer(ecg.app, name="ecg")
app.add_typer(catalog.profiles_app, name="profiles")
app.add_typer(catalog.targets_app, name="targets")
app.add_typer(keys.app, name="keys")
for command_group in (host, build, device, profile, net, evaluate, dashboard, fleet, validate, curriculum, tune):
    command_group.register(app)  # each adds its own commands
app.command(name="demo", help="Run the whole path that exists so far, end to end.")(demo.demo)


def main() -> None:
    """The console script: every error a user can cause (a KasminaError, a path or port the system refuses)
    is one line on stderr and exit 2, never a traceback; a bug is one line and exit 1 (KASMINA_VERBOSE=1
    shows its traceback). Option errors are already one line (:class:`OneLineErrors`)."""
    try:
        app()
    except MissingExtraError as exc:  # not the user's mistake: this install lacks an optional part
        error_exit(str(exc), EXIT_NOT_AVAILABLE)
    except KasminaError as exc:
        _error(str(exc))
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except OSError as exc:  # a path or a port the user gave
        if os.environ.get("KASMINA_VERBOSE"):  # also set by --verbose
            raise
        _error((f"{exc.filename}: " if exc.filename else "") + (exc.strerror or str(exc)))
    except Exception as exc:  # a bug, not the user's doing: still one line, the traceback on request
        if os.environ.get("KASMINA_VERBOSE"):  # also set by --verbose
            raise
        first = str(exc).splitlines()[0] if str(exc) else ""
        if json_mode():
            emit({"error": f"internal error: {type(exc).__name__}: {first}", "code": EXIT_CHECK_FAILED})
            sys.exit(EXIT_CHECK_FAILED)
        err_console.print(
            f"[bold red]internal error:[/] {type(exc).__name__}: {escape(first)} (a bug: please report it; "
            "KASMINA_VERBOSE=1 shows the traceback)", highlight=False, soft_wrap=True,
        )  # fmt: skip
        sys.exit(EXIT_CHECK_FAILED)


if __name__ == "__main__":
    main()
