"""The CLI's one convention (kasmina_edge.cli.common): every command takes `--json` as a flag (one JSON document
on stdout, no tables), errors under --json are {"error", "code"} on stdout, and the exit codes are 0 ok,
1 a check failed, 2 user error, 3 not available."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from kasmina_edge.cli import common
from kasmina_edge.cli.app import app

REPO = Path(__file__).resolve().parent.parent.parent

def _leaf_commands(cmd: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    subs = getattr(cmd, "commands", None)
    if subs:
        for name, sub in subs.items():
            yield from _leaf_commands(sub, (*path, name))
    else:
        yield path


COMMANDS = sorted(_leaf_commands(typer.main.get_command(app)))


def test_the_walk_finds_every_command() -> None:
    names = {" ".join(c) for c in COMMANDS}
    assert {"train", "build", "run", "flash", "send", "ota", "keys init", "audit verify", "fleet up",
            "fleet rollout", "dashboard", "validate", "certify"} <= names
    assert len(COMMANDS) >= 25


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p))
def test_every_command_help_mentions_json(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "--json" in result.output, f"`kasmina-edge {' '.join(path)} --help` does not mention --json"


def _error_document(out: str) -> dict[str, Any]:
    doc = json.loads(out)  # the whole of stdout is one JSON document
    assert set(doc) == {"error", "code"}, doc
    assert isinstance(doc["error"], str) and doc["error"] and "\n" not in doc["error"]
    return doc


def test_a_user_error_in_a_command_is_json_and_exit_2(kasmina) -> None:  # type: ignore[no-untyped-def]
    got = kasmina("ecg", "stats", "nope:x", "--json")
    assert got.code == common.EXIT_USER_ERROR == 2
    doc = _error_document(got.out)
    assert doc["code"] == 2 and "nope" in doc["error"]
    assert got.err_lines == []  # nothing but the document
    # the same error without --json: one line on stderr, nothing on stdout
    plain = kasmina("ecg", "stats", "nope:x")
    assert plain.code == 2 and plain.out == "" and len(plain.err_lines) == 1 and "nope" in plain.err


def test_an_option_error_before_the_command_runs_is_json_too(kasmina) -> None:  # type: ignore[no-untyped-def]
    got = kasmina("ecg", "synth", "--json", "--out", "rec", "--minutes", "-1")
    assert got.code == 2
    assert "--minutes" in _error_document(got.out)["error"]
    missing = kasmina("keys", "show", "--dir", "no-such-keys", "--json")
    assert missing.code == 2 and "no-such-keys" in _error_document(missing.out)["error"]


def test_a_missing_extra_exits_3_naming_it(kasmina, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    import kasmina_edge.contracts.optional as optional

    real = optional._import

    def without_fastapi(module: str):  # type: ignore[no-untyped-def]
        if module == "fastapi":
            raise ImportError("No module named 'fastapi'", name="fastapi")
        return real(module)

    monkeypatch.setattr(optional, "_import", without_fastapi)
    got = kasmina("fleet", "status", "--json")
    assert got.code == common.EXIT_NOT_AVAILABLE == 3
    doc = _error_document(got.out)
    assert doc["code"] == 3 and "kasmina-edge[server]" in doc["error"]
    plain = kasmina("fleet", "status")
    assert plain.code == 3 and len(plain.err_lines) == 1 and "fastapi" in plain.err


def test_a_failed_check_exits_1(kasmina, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from kasmina_edge.net.audit import AuditLog, load_or_create_key

    key_file = tmp_path / "audit.key"
    log = AuditLog(tmp_path / "ops.jsonl", key=load_or_create_key(key_file))
    for n in range(3):
        log.append("sent", device="patch-01", name=f"cmd-{n}")
    ok = kasmina("audit", "verify", str(tmp_path / "ops.jsonl"), "--key", str(key_file), "--json")
    assert ok.code == 0, ok.out + ok.err
    assert json.loads(ok.out)["entries"] == 3
    lines = (tmp_path / "ops.jsonl").read_text().splitlines(keepends=True)
    (tmp_path / "ops.jsonl").write_text("".join(lines[:-1]))  # truncated: the signed head no longer matches
    bad = kasmina("audit", "verify", str(tmp_path / "ops.jsonl"), "--key", str(key_file), "--json")
    assert bad.code == common.EXIT_CHECK_FAILED == 1
    assert _error_document(bad.out)["code"] == 1


def test_json_output_is_one_document_without_tables(kasmina, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    scen = json.loads(kasmina("ecg", "scenarios", "--json").out)
    assert any(s["name"] == "noisy-walk" for s in scen)
    init = kasmina("keys", "init", "--dir", str(tmp_path / "k"), "--json")
    assert init.code == 0, init.err
    made = json.loads(init.out)
    shown = json.loads(kasmina("keys", "show", "--dir", str(tmp_path / "k"), "--json").out)
    assert shown["key_id"] == made["key_id"] and "BEGIN PUBLIC KEY" in shown["public_key_pem"]
    synth = kasmina("ecg", "synth", "--out", str(tmp_path / "rec"), "--minutes", "0.2", "--json")
    assert synth.code == 0, synth.err
    body = json.loads(synth.out)
    assert body["beats"] > 5 and Path(body["record"] + ".hea").exists()


def test_readme_documents_the_exit_codes_and_the_glossary() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for code, name in ((common.EXIT_OK, "ok"), (common.EXIT_CHECK_FAILED, "check failed"),
                       (common.EXIT_USER_ERROR, "user error"), (common.EXIT_NOT_AVAILABLE, "not available")):
        assert f"| {code} | {name}" in readme, f"README: exit code {code} ({name}) missing from the table"
    for term in ("seed", "blueprint", "site", "Kasmina", "Tamiyo", "germinate", "blend", "fossilize", "cull",
                 "embargo", "gate"):
        assert f"**{term}**" in readme, f"README glossary: {term} missing"
