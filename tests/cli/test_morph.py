"""`kasmina-edge morph`: options that need --data (or refuse it) are one line, exit 2; train, morph --report
and --resume end to end on the tiny preset (slow)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.mark.parametrize(
    ("extra", "needle"),
    [(["--patients", "3"], "--patients: not with --data"), (["--resume"], "--resume: not with --data"),
     (["--conditions", "motion"], "electrode-motion"), (["--snr", "x"], "--snr")],
)  # fmt: skip
def test_morph_data_bad_options_are_one_line(extra: list[str], needle: str, tmp_path: Path, kasmina) -> None:  # type: ignore[no-untyped-def]
    from kasmina_edge.host.experiment import save_checkpoint

    ckpt = tmp_path / "base.pt"
    save_checkpoint(ckpt, {"kind": "base", "train_records": ["a"], "val_records": ["b"]})
    r = kasmina("morph", "--checkpoint", str(ckpt), "--data", f"wfdb:{tmp_path}", *extra)
    assert r.code == 2 and needle in r.err + r.out and "Traceback" not in r.err + r.out


def test_real_only_options_need_data(tmp_path: Path, kasmina) -> None:  # type: ignore[no-untyped-def]
    r = kasmina("morph", "--checkpoint", str(tmp_path / "x.pt"), "--snr", "0")
    assert r.code == 2 and "--snr" in r.err + r.out


@pytest.mark.slow
def test_cli_train_morph_report_and_resume(tmp_path: Path) -> None:
    """The commands end to end on the tiny preset (what `kasmina-edge demo` runs)."""
    from typer.testing import CliRunner

    from kasmina_edge.cli.app import app

    runner = CliRunner()
    ckpt = tmp_path / "base.pt"
    # the tiny preset's own epochs: an under-trained base is still improving, and Tamiyo then waits
    res = runner.invoke(app, ["train", "--config", "tiny", "--out", str(ckpt)])
    assert res.exit_code == 0, res.output
    assert "macro-F1" in res.output and ckpt.exists()
    seeds = tmp_path / "seeds"
    args = ["morph", "--checkpoint", str(ckpt), "--preset", "tiny", "--out", str(seeds), "--report"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "lifecycle trace" in res.output and "DORMANT" in res.output
    assert (seeds / "library.json").exists()
    res = runner.invoke(app, [*args, "--resume"])
    assert res.exit_code == 0 and "resumed" in res.output
    bad = runner.invoke(app, ["morph", "--checkpoint", str(tmp_path / "nope.pt")])
    assert bad.exit_code != 0
