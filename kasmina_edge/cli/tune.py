"""`kasmina-edge tune`: tune Tamiyo's reward weights, and browse the intensity config library.

    kasmina-edge tune reward --trials 24 --out runs/tune            # measure a grid, run the study, plot the front
    kasmina-edge tune reward --grid runs/tune/grid.json --trials 40 --json
    kasmina-edge tune intensity list
    kasmina-edge tune intensity show cautious                        # or a path to your own .toml

torch, optuna and matplotlib are imported inside the commands only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from kasmina_edge.cli import checks
from kasmina_edge.cli.common import EXIT_NOT_AVAILABLE, emit, error_exit, fail, human, json_option
from kasmina_edge.contracts.errors import KasminaError, MissingExtraError

app = typer.Typer(help="Reward tuning (Optuna) and intensity configs.", no_args_is_help=True)
intensity_app = typer.Typer(help="The intensity config library: lr scales, activation schedules, safety.",
                            no_args_is_help=True)  # fmt: skip
app.add_typer(intensity_app, name="intensity")


# --------------------------------------------------------------------------- reward


def _pct(v: float) -> str:
    return f"{100 * v:.2f}%"


def _scores_row(label: str, weights: dict[str, float], s: Any) -> list[str]:
    w = ", ".join(f"{k}={weights[k]:.3g}" for k in ("accuracy", "params", "latency"))
    return [label, w, f"{s.heldout_gain_points:+.3f}", _pct(s.params_fraction), _pct(s.macs_fraction),
            f"{100 * s.act_rate:.0f}%"]  # fmt: skip


def print_result(con: Console, result: Any) -> None:
    """Before/after on both held-out sets, and the Pareto front."""
    cols = ("", "weights (accuracy, params, latency)", "gain pt", "params", "MACs", "acts")
    t = Table(title="Tamiyo reward tuning: before (default weights) vs after (chosen front point)")
    for c in cols:
        t.add_column(c, justify="left" if c in ("", cols[1]) else "right")
    t.add_row(*_scores_row("before · tuning set", result.before.weights, result.before.scores))
    t.add_row(*_scores_row("after  · tuning set", result.after.weights, result.after.scores))
    t.add_row(*_scores_row("before · report set", result.before.weights, result.report_before))
    t.add_row(*_scores_row("after  · report set", result.after.weights, result.report_after))
    con.print(t)
    f = Table(title=f"Pareto front ({len(result.front)} of {len(result.trials)} trials)")
    for c in ("trial", *cols[1:]):
        f.add_column(c, justify="left" if c == cols[1] else "right")
    for p in result.front:
        f.add_row(*_scores_row(str(p.number), p.weights, p.scores))
    con.print(f)
    con.print(f"after = {result.choice}")


def run_reward(con: Console, out: Path, trials: int, grid_path: Path | None, seed: int, episodes: int) -> dict[str, Any]:
    """Measure (or load) the grid, run the study, write tuning.json and pareto.png under ``out``."""
    import dataclasses

    from kasmina_edge.host.tamiyo.tuning import (
        GridConfig,
        OutcomeGrid,
        PolicyBudget,
        TuningError,
        TuningProblem,
        measure_grid,
        plot_front,
        run_study,
        write_json,
    )

    if trials < 2:
        raise TuningError(f"--trials: at least 2 (the default weights and one more), got {trials}")
    if grid_path is not None:
        grid = OutcomeGrid.load(grid_path)
    else:
        from kasmina_edge.host.train import set_threads

        set_threads(1)
        with con.status("measuring the outcome grid (a small base, one seed per cell; ~1-2 min)") as st:
            grid = measure_grid(GridConfig(seed=seed), say=lambda m: st.update(m))
        grid_path = out / "grid.json"
        grid.save(grid_path)
        con.print(f"grid: {grid_path} ({len(grid.cells)} seeds grown)")
    budget = dataclasses.replace(PolicyBudget(), episodes=episodes)
    with con.status(f"study: {trials} trials (NSGA-II, seed {seed})") as st:
        result = run_study(TuningProblem(grid, budget, seed=seed), trials, seed=seed, say=lambda m: st.update(m))
    print_result(con, result)
    body = {"grid": str(grid_path), "budget": dataclasses.asdict(budget), **result.to_dict()}
    report = out / "tuning.json"
    write_json(report, body)
    png = plot_front(result, out / "pareto.png")
    con.print(f"json: {report}\nplot: {png}")
    return {**body, "json": str(report), "plot": str(png)}


@app.command("reward")
def reward_command(
    trials: int = typer.Option(24, "--trials", help="Study trials (the first is the default weights).",
                               callback=checks.at_least_one),  # fmt: skip
    out: Path = typer.Option(Path("runs/tune"), "--out", help="Folder for grid.json, tuning.json and pareto.png.",
                             callback=checks.output_dir),  # fmt: skip
    grid: Path = typer.Option(None, "--grid", help="A measured outcome grid (grid.json) to reuse instead of "
                              "measuring one.", callback=checks.input_file),  # fmt: skip
    seed: int = typer.Option(0, "--seed", help="Seeds the grid, the situations, the policy and the sampler."),
    episodes: int = typer.Option(30, "--episodes", help="REINFORCE episodes per trial.", callback=checks.at_least_one),
    as_json: bool = json_option(),
) -> None:
    """Search Tamiyo's reward weights (Optuna NSGA-II) for held-out gain vs parameters vs MACs."""
    try:
        body = run_reward(human(as_json), out, trials, grid, seed, episodes)
    except MissingExtraError as exc:
        error_exit(str(exc), EXIT_NOT_AVAILABLE)
    except KasminaError as exc:
        fail(str(exc))
    if as_json:
        emit(body)


# --------------------------------------------------------------------------- intensity


@intensity_app.command("list")
def intensity_list(as_json: bool = json_option()) -> None:
    """The maintained intensity configs."""
    from kasmina_edge.host.intensity import library, resolve

    try:
        rows = [(name, path, resolve(name)) for name, path in library().items()]
    except KasminaError as exc:
        fail(str(exc))
    if as_json:
        emit([{"name": n, "file": str(p), "description": c.description} for n, p, c in rows])
        return
    t = Table(title="intensity configs (kasmina-edge tune intensity show NAME)")
    for col in ("name", "lr", "schedule", "safety"):
        t.add_column(col)
    for name, _p, conf in rows:
        c, s = conf, conf.safety
        checks_ = [f"loss x{s.loss_spike_factor:g}" if s.loss_spike_factor else "",
                   f"grad {s.max_grad_norm:g}" if s.max_grad_norm else ""]  # fmt: skip
        safety = f"{s.action}: {', '.join(x for x in checks_ if x) or 'no checks'}; max lr x{s.max_lr_scale:g}"
        if s.forced_cull:
            safety += f"; cull {', '.join(s.forced_cull)}"
        t.add_row(name, f"x{c.lr.default:g}", f"{c.schedule.kind}, warm-up {c.schedule.warmup_steps}", safety)
    human(False).print(t)


@intensity_app.command("show")
def intensity_show(
    name: str = typer.Argument(..., help="A library name (see `list`) or a path to a .toml file."),
    as_json: bool = json_option(),
) -> None:
    """One intensity config, validated, with every field (defaults filled in)."""
    from kasmina_edge.host.intensity import resolve

    try:
        cfg = resolve(name)
    except KasminaError as exc:
        fail(str(exc))
    body = cfg.model_dump(mode="json")
    if as_json:
        emit(body)
        return
    t = Table(title=f"intensity config {cfg.name}: {cfg.description}")
    t.add_column("field")
    t.add_column("value")
    for section in ("lr", "schedule", "safety"):
        for key, value in body[section].items():
            t.add_row(f"{section}.{key}", str(value))
    human(False).print(t)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="tune")
