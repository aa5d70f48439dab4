"""`kasmina-edge build`: `--explain` prints the plan, an unknown target is a user error, and a missed parity
bound is by default a warning and a bundle that records the miss; with --strict one error line, exit 2 and nothing written. The README's first build has no --seeds.

The miss is planted by raising the argmax-agreement bound above 100 % (unreachable by any model); the
builds run on a briefly trained tiny base with small synthetic calibration and held-out sets.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest
import torch
import typer
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "compile"))  # host_files: the host's tiny files

from kasmina_edge.compile import parity, pipeline
from kasmina_edge.compile.stages import windows


def _tiny_checkpoint(path: Path) -> None:
    from kasmina_edge.ecg.dataset import synthetic_patients
    from kasmina_edge.host.data import beats
    from kasmina_edge.host.experiment import save_checkpoint
    from kasmina_edge.host.model import build_model
    from kasmina_edge.host.train import class_weights

    model = build_model("tiny", seed=0)
    ds = beats(synthetic_patients(4, 2.0, seed=5))
    x, rr, y = (torch.from_numpy(a) for a in (ds.windows, ds.rr, ds.labels))
    model.head.set_rr_stats(rr)
    opt = torch.optim.Adam(model.host_parameters(), lr=5e-3)
    loss_fn = torch.nn.CrossEntropyLoss(weight=class_weights(ds.labels))
    g = torch.Generator().manual_seed(0)
    for _ in range(100):
        idx = torch.randint(0, len(y), (64,), generator=g)
        loss = loss_fn(model(x[idx], rr[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    state = {"kind": "base", "model_config": model.config.to_dict(), "state": model.state_dict()}
    save_checkpoint(path, {**state, "experiment_id": "test"})


@pytest.fixture(scope="module")
def base_and_keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from kasmina_edge.contracts.bundle import init_keys

    root = tmp_path_factory.mktemp("strict")
    _tiny_checkpoint(root / "base.pt")
    init_keys(root / "keys")
    return root / "base.pt", root / "keys"


@pytest.fixture
def small_data(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI builds with its defaults; only the data sets shrink (and MIT-BIH 100 stays out)."""
    real = windows.load_data

    def small(req: pipeline.BuildRequest) -> tuple[pipeline.EvalSet, list[pipeline.EvalSet]]:
        return real(dataclasses.replace(req, calibration_patients=2, heldout_patients=2, minutes=1.0))

    monkeypatch.setattr(windows, "load_data", small)
    monkeypatch.setattr(windows, "default_record100", lambda: None)


@pytest.fixture
def unreachable_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parity, "MIN_ARGMAX_AGREEMENT", 1.01)


def _kasmina(
    argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> tuple[int, str, str]:
    """Run the installed entry point's main() in-process: its exit code, stdout and stderr."""
    from kasmina_edge.cli.app import main

    monkeypatch.setattr(sys, "argv", ["kasmina-edge", *argv])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main()
    out, err = capsys.readouterr()
    code = exc.value.code
    return (code if isinstance(code, int) else 0), out, err


def test_default_build_without_seeds_writes_the_bundle_and_warns_of_a_missed_bound(
    base_and_keys: tuple[Path, Path],
    small_data: None,
    unreachable_bound: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kasmina_edge.contracts.bundle import read_bundle

    ckpt, keys = base_and_keys
    out = tmp_path / "bundle.kedge"
    argv = ["build", "--target", "edgetpu", "--checkpoint", str(ckpt), "--out", str(out), "--keys", str(keys)]
    code, stdout, stderr = _kasmina(argv, capsys, monkeypatch)
    assert code == 0, stderr
    warnings = [line for line in stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, stderr  # one chain (base only), one data set
    assert "argmax agrees with torch on" in warnings[0] and "the bound is 101 %" in warnings[0]
    assert "--strict" in warnings[0] and "bundle written" in warnings[0]
    assert "Traceback" not in stderr and "error:" not in stderr

    bundle = read_bundle(out, keys)  # signed and every hash as written
    manifest = bundle.manifest.model_dump(by_alias=True)
    assert manifest["chain"]["default_active"] == {}  # base only: no --seeds
    assert not any(a["kind"] == "kernel" for a in manifest["artifacts"])
    record = manifest["parity"]
    assert record["ok"] is False and record["min_argmax_agreement"] == pytest.approx(1.01)
    (miss,) = record["missed"]
    assert miss["chain"] == "base" and miss["dataset"] == "synthetic held-out" and miss["ok"] is False
    assert f"{100 * miss['argmax_agreement']:.2f}" in warnings[0]
    report = json.loads(bundle.files["report.json"])
    assert any(n.startswith("PARITY BOUND MISSED: edgetpu chain (base)") for n in report["notes"])


def test_strict_build_refuses_a_missed_bound_in_one_line_and_writes_nothing(
    base_and_keys: tuple[Path, Path],
    small_data: None,
    unreachable_bound: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ckpt, keys = base_and_keys
    out, report = tmp_path / "bundle.kedge", tmp_path / "report.json"
    argv = ["build", "--target", "edgetpu", "--checkpoint", str(ckpt), "--out", str(out), "--keys", str(keys),
            "--report", str(report), "--strict"]  # fmt: skip
    code, _, stderr = _kasmina(argv, capsys, monkeypatch)
    assert code == 2
    errors = [line for line in stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("error: edgetpu chain (base) on synthetic held-out:"), (
        stderr
    )
    assert "the bound is 101 %" in errors[0] and "--strict refuses" in errors[0]
    assert "Traceback" not in stderr and "warning:" not in stderr
    assert list(tmp_path.iterdir()) == []  # no bundle, no report, no temp file left


def test_strict_and_the_deprecated_alias_contradict(base_and_keys: tuple[Path, Path]) -> None:
    from kasmina_edge.cli.build import run_build
    from kasmina_edge.cli.common import console
    from kasmina_edge.core.build_errors import BuildError

    ckpt, _ = base_and_keys
    with pytest.raises(BuildError, match="--strict and --allow-parity-miss contradict"):
        run_build(console, checkpoint=ckpt, seeds=None, target="edgetpu", strict=True, allow_parity_miss=True)


def test_the_deprecated_alias_is_accepted_hidden_and_says_so(
    base_and_keys: tuple[Path, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ckpt, _ = base_and_keys
    argv = ["build", "--target", "edgetpu", "--checkpoint", str(ckpt), "--allow-parity-miss", "--explain"]
    code, stdout, stderr = _kasmina(argv, capsys, monkeypatch)
    assert code == 0 and "build plan" in stdout and "a missed bound is a warning" in stdout
    assert "--allow-parity-miss is the default now" in stderr
    code, stdout, _ = _kasmina(["build", "--help"], capsys, monkeypatch)
    assert "--strict" in stdout and "--allow-parity-miss" not in stdout


# ------------------------------------------------------------------ the parity check itself (fast)


# ------------------------------------------------------------------ build --explain on the host's tiny files


@pytest.fixture(scope="module")
def host_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from host_files import write_checkpoint, write_library

    root = tmp_path_factory.mktemp("host")
    write_checkpoint(root / "base.pt")
    write_library(root / "seeds")
    return root / "base.pt", root / "seeds"


def _app() -> typer.Typer:
    from kasmina_edge.cli import build as build_cli

    app = typer.Typer()
    app.callback()(lambda: None)
    build_cli.register(app)
    return app


def test_cli_explain_prints_the_plan(host_files) -> None:  # type: ignore[no-untyped-def]
    ckpt, seeds = host_files
    res = CliRunner().invoke(
        _app(),
        ["build", "--checkpoint", str(ckpt), "--seeds", str(seeds), "--target", "edgetpu", "--explain"],
    )
    assert res.exit_code == 0, res.output
    assert "build plan" in res.output and "segment_4" in res.output and "edgetpu_compiler" in res.output


def test_cli_unknown_target_is_a_user_error(host_files) -> None:  # type: ignore[no-untyped-def]
    from kasmina_edge.contracts.errors import KasminaError

    ckpt, _ = host_files
    res = CliRunner().invoke(_app(), ["build", "--checkpoint", str(ckpt), "--target", "gpu", "--explain"])
    assert isinstance(res.exception, KasminaError) and "--target" in str(res.exception)


