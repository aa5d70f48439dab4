"""The README's "A tour of the CLI" runs as written (issue 17, item 1).

Default suite: every line names real subcommands and options, gives every required one, and values of the
right type; the lines before training run for real. Slow: the whole block as a bash script, in order,
background jobs included, in a fresh folder with its own KASMINA_HOME.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"


def tour_block() -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## A tour of the CLI") :]
    start = section.index("```bash\n") + len("```bash\n")
    return section[start : section.index("```", start)]


def tour_commands() -> list[list[str]]:
    """Each command of the block as argv (continuation lines joined, comments and a trailing '&' dropped)."""
    commands = []
    for line in tour_block().replace("\\\n", " ").splitlines():
        argv = shlex.split(line, comments=True)
        if argv and argv[-1] == "&":
            argv = argv[:-1]
        if argv:
            commands.append(argv)
    return commands


def dry_parse(argv: list[str]) -> None:
    """Parse like the app would, without running anything: unknown subcommands and options, missing required
    ones, extra arguments and values of the wrong type raise."""
    from typer._click import Context
    from typer.main import get_command

    from kasmina_edge.cli.app import app

    assert argv[0] == "kasmina-edge", argv
    cmd, args = get_command(app), argv[1:]
    while hasattr(cmd, "commands") and args and not args[0].startswith("-"):
        sub = cmd.get_command(Context(cmd), args[0])
        assert sub is not None, f"{' '.join(argv)}: no subcommand {args[0]!r}"
        cmd, args = sub, args[1:]
    if "--help" in args:
        return
    ctx = Context(cmd, info_name=argv[1])
    opts, extra, _ = cmd.make_parser(ctx).parse_args(args=list(args))
    assert not extra, f"{' '.join(argv)}: unexpected arguments {extra}"
    for p in cmd.params:
        if p.name not in opts or opts[p.name] is None:
            assert not p.required, f"{' '.join(argv)}: missing {p.opts[0]}"
            continue
        p.get_runtime_param().coerce(opts[p.name], param=p, ctx=ctx)  # type: ignore[attr-defined]  # e.g. --seconds abc


def test_the_tour_names_real_options() -> None:
    commands = tour_commands()
    assert len(commands) >= 15 and all(c[0] == "kasmina-edge" for c in commands)
    for argv in commands:
        dry_parse(argv)


def test_dry_parse_catches_what_the_review_found() -> None:
    # the old tour line: `build --target edgetpu --out bundle.kedge` missed --checkpoint
    with pytest.raises(AssertionError, match="missing --checkpoint"):
        dry_parse(["kasmina-edge", "build", "--target", "edgetpu", "--out", "bundle.kedge"])
    with pytest.raises(Exception, match="--bogus"):
        dry_parse(["kasmina-edge", "run", "--bogus"])


def test_the_tour_up_to_training_runs(kasmina, home: Path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("wfdb")
    pytest.importorskip("matplotlib")
    for argv in tour_commands():
        if argv[1] == "train":
            break
        got = kasmina(*argv[1:])
        assert got.code == 0, (argv, got.err)
    assert (Path.cwd() / "rec" / "noisy-walk-s0.hea").exists() and (Path.cwd() / "strip.png").stat().st_size > 10_000
    assert (home / "keys" / "bundle-signing.pub").exists()  # keys init wrote into KASMINA_HOME


@pytest.mark.slow
def test_the_whole_tour_as_written(tmp_path: Path) -> None:
    pytest.importorskip("amqtt")
    bin_dir = Path(sys.executable).parent
    assert (bin_dir / "kasmina-edge").exists(), "the console script is not installed beside this python"
    env = {**os.environ, "KASMINA_HOME": str(tmp_path / "home"), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "COLUMNS": "80"}  # fmt: skip
    for var in ("KASMINA_KEYS_DIR", "KASMINA_DEVICES_DIR", "KASMINA_COMMAND_KEYS", "KASMINA_AUDIT_DIR"):
        env.pop(var, None)
    work = tmp_path / "work"
    work.mkdir()
    script = "set -euo pipefail\n" + tour_block()
    proc = subprocess.Popen(["bash", "-c", script], cwd=work, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)  # fmt: skip
    try:
        out, _ = proc.communicate(timeout=900)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)  # the background broker and run, if still there
    assert proc.returncode == 0, out[-4000:]
    assert "Traceback" not in out, out[-4000:]
    for expected in ("wrote rec/noisy-walk-s0", "flashed", "acknowledged by patch-01"):
        assert expected in out, (expected, out[-4000:])
    assert (work / "tiny.kedge").exists() and (work / "report.html").exists() and (work / "run.jsonl").exists()
    assert (tmp_path / "home" / "devices" / "patch-01").is_dir()
    # at 80 columns nothing is cut: no line wider, no figure or name ending in '…'
    wide = [ln for ln in out.splitlines() if len(ln) > 80]
    assert not wide, "\n".join(wide[:10])
    cut = [ln for ln in out.splitlines() if "…" in ln]
    assert not cut, "\n".join(cut[:10])
