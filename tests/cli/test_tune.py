"""`kasmina-edge tune`: reward tuning on a grid file, the intensity library, --json and exit codes.

The commands run through a root app that registers the group as app.py does (``tune.register``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import typer

from kasmina_edge.cli import common, tune

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "host"))

from test_tuning import synthetic_grid  # noqa: E402


def _root() -> typer.Typer:
    root = typer.Typer()

    @root.callback()
    def _cb() -> None:
        pass

    tune.register(root)
    return root


@pytest.fixture(autouse=True)
def _human() -> None:
    common.set_json_mode(False)


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    """run(*args) -> (exit code, stdout, stderr), in-process like the console script."""

    def invoke(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        common.set_json_mode(False)  # module state: each invocation starts in human mode, as the console script does
        try:
            _root()(list(args), prog_name="kasmina-edge")
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 0
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return invoke


def test_intensity_list_and_show_as_json_and_tables(run) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = run("tune", "intensity", "list", "--json")
    assert code == 0
    names = [r["name"] for r in json.loads(out)]
    assert {"default", "cautious", "aggressive", "edge-tpu"} <= set(names)
    code, out, _ = run("tune", "intensity", "show", "cautious", "--json")
    body = json.loads(out)
    assert code == 0 and body["name"] == "cautious" and body["schedule"]["kind"] == "cosine"
    code, out, _ = run("tune", "intensity", "show", "edge-tpu")
    assert code == 0 and "safety.forced_cull" in out and "mini_attention" in out


def test_intensity_errors_are_one_line_exit_2(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    code, out, err = run("tune", "intensity", "show", "nope", "--json")
    assert code == 2 and json.loads(out) == {"error": json.loads(out)["error"], "code": 2}
    assert "not in the library" in json.loads(out)["error"]
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n[safety]\naction = "explode"\n')
    code, _out, err = run("tune", "intensity", "show", str(bad))
    assert code == 2 and "bad.toml: safety.action" in err and len(err.strip().splitlines()) == 1


def test_tune_reward_on_a_grid_writes_report_and_plot(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    grid = tmp_path / "grid.json"
    synthetic_grid().save(grid)
    out = tmp_path / "out"
    code, stdout, err = run("tune", "reward", "--grid", str(grid), "--trials", "4", "--episodes", "6",
                            "--out", str(out), "--json")  # fmt: skip
    assert code == 0, err
    body = json.loads(stdout)
    assert len(body["trials"]) == 4 and body["before"]["weights"]["accuracy"] == 0.1
    assert body["front"] and body["after"]["number"] in [p["number"] for p in body["front"]]
    assert json.loads((out / "tuning.json").read_text())["after"] == body["after"]
    assert (out / "pareto.png").read_bytes()[:4] == b"\x89PNG"


def test_tune_reward_user_errors(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    grid = tmp_path / "grid.json"
    grid.write_text('{"format": "other"}')
    code, out, _ = run("tune", "reward", "--grid", str(grid), "--out", str(tmp_path / "o"), "--json")
    assert code == 2 and "format 'other'" in json.loads(out)["error"]
    synthetic_grid().save(grid)
    code, _out, err = run("tune", "reward", "--grid", str(grid), "--trials", "1", "--out", str(tmp_path / "o"))
    assert code == 2 and "--trials: at least 2" in err
