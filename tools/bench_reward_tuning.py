"""Benchmark reward tuning (issue 22 item 4): Tamiyo's policy trained with the default reward weights vs the
weights an Optuna NSGA-II study chose, side by side on held-out data neither the policy nor the study saw.

One run: a small base on synthetic patients, one seed grown per allowed (condition, site, blueprint) and
measured three ways (the gates' validation gain trains the policy; held-out patients A score the study;
held-out patients B, with situations from another random stream, make the report), the study, then:

- before (default weights), after (the chosen front point), and the heuristic Tamiyo the policy imitates,
  on the report set: held-out macro-F1 points gained per decision, parameters and MACs added (% of base),
  how often each acts; ratios after/before;
- the Pareto front's size and points; the plot (PNG).

    .venv/bin/python tools/bench_reward_tuning.py [--trials 24] [--seed 0] [--grid runs/grid.json]
        [--json runs/bench_reward_tuning.json] [--plot runs/bench_reward_tuning.png]
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console()


def _ratio(a: float, b: float) -> float | None:
    return a / b if abs(b) > 1e-12 else None


def run(args: argparse.Namespace) -> dict[str, Any]:
    from kasmina_edge.host.tamiyo.tuning import (
        GridConfig,
        OutcomeGrid,
        PolicyBudget,
        TuningProblem,
        measure_grid,
        plot_front,
        run_study,
    )
    from kasmina_edge.host.train import set_threads

    threads = set_threads(1)
    t0 = time.perf_counter()
    if args.grid is not None and args.grid.exists():
        grid = OutcomeGrid.load(args.grid)
        console.print(f"grid: {args.grid} (reused)")
    else:
        with console.status("measuring the outcome grid") as st:
            grid = measure_grid(GridConfig(seed=args.seed), say=lambda m: st.update(m))
        if args.grid is not None:
            grid.save(args.grid)
    t_grid = time.perf_counter() - t0
    problem = TuningProblem(grid, PolicyBudget(), seed=args.seed)
    t1 = time.perf_counter()
    with console.status(f"study: {args.trials} trials") as st:
        result = run_study(problem, args.trials, seed=args.seed, say=lambda m: st.update(m))
    t_study = time.perf_counter() - t1
    heuristic = [problem.heuristic.decide(s.obs, s.masks) for s in problem.report_situations]
    heur = problem.score_decisions(heuristic, problem.report_situations, "report")
    png = plot_front(result, args.plot, title=f"Tamiyo reward tuning: {args.trials} trials, seed {args.seed}")
    fossils = [c for c in grid.cells if c.fossilized]
    b, a = result.report_before, result.report_after
    return {
        "seed": args.seed, "n_trials": args.trials, "threads": threads,
        "grid": {"cells": len(grid.cells), "fossilized": len(fossils), "conditions": sorted(set(c.condition for c in grid.cells)),
                 "blueprints": grid.blueprints, "base_params": grid.base_params, "base_macs": grid.base_macs,
                 "mean_fossil_gain_points": {k: (100 * sum(getattr(c, k) for c in fossils) / len(fossils) if fossils else None)
                                             for k in ("train_gain", "tune_gain", "report_gain")},
                 "file": str(args.grid) if args.grid else None, "config": grid.meta.get("config")},
        "budget": dataclasses.asdict(problem.budget),
        "side_by_side": {"before": dataclasses.asdict(b), "after": dataclasses.asdict(a), "heuristic": dataclasses.asdict(heur),
                   "ratio_after_before": {k: _ratio(getattr(a, k), getattr(b, k)) for k in dataclasses.asdict(a)}},
        "front_size": len(result.front), "plot": str(png),
        "seconds": {"grid": t_grid, "study": t_study, "total": time.perf_counter() - t0},
        **result.to_dict(),
    }  # fmt: skip


def report(out: dict[str, Any]) -> None:
    g = out["grid"]
    console.print(f"grid: {g['cells']} seeds grown ({g['fossilized']} fossilized) over {', '.join(g['conditions'])}; "
                  f"mean fossil gain (pt): validation {_f(g['mean_fossil_gain_points']['train_gain'])}, held-out A "
                  f"{_f(g['mean_fossil_gain_points']['tune_gain'])}, held-out B "
                  f"{_f(g['mean_fossil_gain_points']['report_gain'])}")  # fmt: skip
    r = out["side_by_side"]
    t = Table(title="reward tuning on the report set (held-out patients B, unseen situations): per decision")
    for c in ("policy", "w acc", "w par", "w lat", "gain pt", "params %", "MACs %", "acts %"):
        t.add_column(c, justify="left" if c == "policy" else "right")
    for label, key, w in (("heuristic", "heuristic", None), ("before (default)", "before", out["before"]["weights"]),
                          ("after (chosen)", "after", out["after"]["weights"])):  # fmt: skip
        s = r[key]
        ws = ["-"] * 3 if w is None else [f"{w[k]:.3g}" for k in ("accuracy", "params", "latency")]
        t.add_row(label, *ws, f"{s['heldout_gain_points']:+.3f}", f"{100 * s['params_fraction']:.2f}",
                  f"{100 * s['macs_fraction']:.2f}", f"{100 * s['act_rate']:.0f}")  # fmt: skip
    ratio = r["ratio_after_before"]
    keys = ("heldout_gain_points", "params_fraction", "macs_fraction", "act_rate")
    t.add_row("after / before", "", "", "", *(_x(ratio[k]) for k in keys))
    scale = (1.0, 100.0, 100.0, 100.0)
    t.add_row("after - before", "", "", "", *(f"{m * (r['after'][k] - r['before'][k]):+.2f}" for m, k in zip(scale, keys, strict=True)))
    console.print(t)
    f = Table(title=f"Pareto front on held-out set A: {out['front_size']} of {out['n_trials']} trials")
    for c in ("trial", "w acc", "w par", "w lat", "gain pt", "params %", "MACs %"):
        f.add_column(c, justify="right")
    for p in out["front"]:
        w = p["weights"]
        f.add_row(str(p["number"]), *(f"{w[k]:.3g}" for k in ("accuracy", "params", "latency")),
                  f"{p['heldout_gain_points']:+.3f}", f"{100 * p['params_fraction']:.2f}", f"{100 * p['macs_fraction']:.2f}")  # fmt: skip
    console.print(f)
    console.print(f"after = {out['choice']}")


def _f(v: float | None) -> str:
    return "-" if v is None else f"{v:+.2f}"


def _x(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}x"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=24)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--grid", type=Path, default=None, help="reuse this outcome grid if it exists, else save it there")
    ap.add_argument("--json", type=Path, default=Path("runs/bench_reward_tuning.json"))
    ap.add_argument("--plot", type=Path, default=Path("runs/bench_reward_tuning.png"))
    args = ap.parse_args(argv)
    from kasmina_edge.host.experiment import atomic_write_json

    out = run(args)
    out["machine"] = {"python": platform.python_version(), "platform": platform.platform()}
    report(out)
    atomic_write_json(args.json, out)
    s = out["seconds"]
    console.print(f"{s['total']:.0f} s (grid {s['grid']:.0f} s, study {s['study']:.0f} s); JSON {args.json}; plot {out['plot']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
