"""`kasmina-edge keys init/show`: default folder, env override, refusal to overwrite, permissions."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kasmina_edge.cli.keys import app
from kasmina_edge.contracts.bundle import PRIVATE_KEY_NAME, PUBLIC_KEY_NAME, load_private_key, load_public_key

runner = CliRunner()


def test_init_writes_a_usable_pair_with_private_key_0600(tmp_path: Path) -> None:
    folder = tmp_path / "k"
    result = runner.invoke(app, ["init", "--dir", str(folder)])
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE((folder / PRIVATE_KEY_NAME).stat().st_mode) == 0o600
    private, public = load_private_key(folder), load_public_key(folder)
    assert private.public_key() == public
    message = b"manifest bytes"
    public.verify(private.sign(message), message)  # raises if the halves do not match
    assert "key id" in result.output


def test_env_override_is_the_default_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KASMINA_KEYS_DIR", str(tmp_path / "env-keys"))
    assert runner.invoke(app, ["init"]).exit_code == 0
    assert (tmp_path / "env-keys" / PUBLIC_KEY_NAME).exists()
    shown = runner.invoke(app, ["show"])
    assert shown.exit_code == 0 and "BEGIN PUBLIC KEY" in shown.output


def test_default_folder_under_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KASMINA_KEYS_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert runner.invoke(app, ["init"]).exit_code == 0
    assert (tmp_path / ".config" / "kasmina-edge" / "keys" / PRIVATE_KEY_NAME).exists()


def test_init_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    folder = tmp_path / "k"
    runner.invoke(app, ["init", "--dir", str(folder)])
    before = (folder / PRIVATE_KEY_NAME).read_bytes()
    result = runner.invoke(app, ["init", "--dir", str(folder)])
    assert result.exit_code == 2
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "--force" in lines[0] and "already exist" in lines[0]
    assert (folder / PRIVATE_KEY_NAME).read_bytes() == before
    assert runner.invoke(app, ["init", "--dir", str(folder), "--force"]).exit_code == 0
    assert (folder / PRIVATE_KEY_NAME).read_bytes() != before


def test_show_without_keys_is_one_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["show", "--dir", str(tmp_path / "none")])
    assert result.exit_code == 2
    assert "keys init" in result.output and "Traceback" not in result.output


def test_show_flags_a_private_key_readable_by_others(tmp_path: Path) -> None:
    folder = tmp_path / "k"
    runner.invoke(app, ["init", "--dir", str(folder)])
    (folder / PRIVATE_KEY_NAME).chmod(0o644)
    result = runner.invoke(app, ["show", "--dir", str(folder)], terminal_width=200)
    assert result.exit_code == 0 and "chmod 600" in result.output
