"""The CLI surface: every product subcommand is listed in --help; --version answers."""

from __future__ import annotations

from typer.testing import CliRunner

from kasmina_edge.cli.app import app

PRODUCT_COMMANDS = [
    "train", "morph", "build", "keys", "flash", "run", "profile", "broker", "monitor", "send",
    "ota", "dashboard", "fleet", "validate", "certify", "demo", "ecg", "profiles", "targets",
]

runner = CliRunner()


def test_help_lists_every_product_subcommand() -> None:
    result = runner.invoke(app, ["--help"], terminal_width=200)
    assert result.exit_code == 0
    for name in PRODUCT_COMMANDS:
        assert f" {name} " in result.output, f"`{name}` missing from --help"


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.startswith("kasmina-edge ")
