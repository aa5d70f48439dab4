"""The typer application: every subcommand of the product, registered in one place."""

from __future__ import annotations

import sys

import typer

from kasmina_edge import __version__
from kasmina_edge.cli import catalog, demo, ecg
from kasmina_edge.cli.common import EXIT_USER_ERROR, add_pending, err_console
from kasmina_edge.contracts.errors import KasminaError

app = typer.Typer(
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
) -> None:
    """kasmina-edge: train → morph → build → flash → run."""


def _register_host_commands() -> None:
    try:
        from kasmina_edge.cli import host
    except ImportError:  # the host command module is not written yet
        add_pending(app, "train", 4, "train the base ECG beat classifier")
        add_pending(app, "morph", 4, "grow seed kernels per signal condition")
        return
    host.register(app)


app.add_typer(ecg.app, name="ecg")
app.add_typer(catalog.profiles_app, name="profiles")
app.add_typer(catalog.targets_app, name="targets")
add_pending(app, "keys", 5, "create the Ed25519 signing keys for bundles")
_register_host_commands()
add_pending(app, "build", 5, "ahead-of-time build per target into a signed bundle")
add_pending(app, "flash", 6, "flash a bundle to a device or emulator")
add_pending(app, "run", 6, "stream ECG through the on-device runtime")
add_pending(app, "profile", 10, "hardware profiler reports")
add_pending(app, "broker", 9, "embedded MQTT broker")
add_pending(app, "monitor", 9, "live telemetry monitor")
add_pending(app, "send", 9, "signed command to a device")
add_pending(app, "ota", 9, "over-the-air bundle update")
add_pending(app, "dashboard", 9, "web dashboard")
add_pending(app, "fleet", 9, "fleet view of many devices")
add_pending(app, "validate", 11, "validate a bundle against recorded data")
add_pending(app, "certify", 11, "certification evidence report")
add_pending(app, "evaluate", 11, "beat-by-beat evaluation against reference annotations")
app.command(name="demo", help="Run the whole path that exists so far, end to end.")(demo.demo)


def main() -> None:
    try:
        app()
    except KasminaError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
