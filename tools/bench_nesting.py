"""Benchmark nested seeds: flat seeds vs one nested seed of 1, 2 and 3 levels, under the same shared budget.

The task (real data a package ships offline): scikit-learn's 8x8 digits as 64-sample rows, 10 classes. A
small BeatClassifier (window 64, no auxiliary features) is trained on clean digits; the seeds then adapt the
frozen host to a shifted domain (the same digits, corrupted: ``--shift``), judged on held-out shifted digits.
Every arm grows on a copy of the same base, from the same budget (parameters, MACs, memory bytes), through the
hierarchical controller (Tamiyo's where rule at the parent level, gain-ranked children at the child level)
and the one arbiter:

- flat: ``bottleneck_adapter`` seeds (rank r), one per site in Tamiyo's order, until the budget refuses;
- flat-wide: one ``bottleneck_adapter`` at Tamiyo's first site, its rank the largest the budget holds;
- nested-1/2/3: one ``nested_seed`` (rank r, fanout 2) at Tamiyo's first site, children grown inside it.

Per arm: validation and test accuracy (gain over the base), parameters/MACs/memory granted, requests refused
(verdicts and distinct seeds), seeds culled, live depth, seconds; ratios against flat.

    .venv/bin/python tools/bench_nesting.py [--json runs/bench_nesting.json] [--seeds 1] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from kasmina_edge.contracts.optional import require
from kasmina_edge.host.kasmina.layer import host_parameters
from kasmina_edge.host.model import BeatClassifier, ModelConfig
from kasmina_edge.host.nesting.arbitration import RULE, Resources
from kasmina_edge.host.nesting.controller import GrowthPlan, GrowthReport, HierarchicalController, root_cost
from kasmina_edge.host.nesting.walk import Task, TaskData, WalkSettings, accuracy

console = Console(width=200)
CONFIG = ModelConfig(
    name="digits", channels=(8, 16, 16, 24), kernels=(5, 5, 3, 3), convs_per_block=1, head_hidden=32,
    chunks=(1, 1, 1, 1), window=64, n_rr=0, n_classes=10,
)  # fmt: skip
SHIFTS = ("flip", "transpose", "invert")


def shifted(x: np.ndarray, shift: str) -> np.ndarray:
    """The corruption the seeds must adapt the frozen host to (x: (N, 64) in [0, 1])."""
    img = x.reshape(-1, 8, 8)
    if shift == "transpose":
        img = img.transpose(0, 2, 1)
    elif shift == "invert":
        img = 1.0 - img
    elif shift == "flip":
        img = img[:, :, ::-1]
    else:
        raise SystemExit(f"unknown --shift {shift!r}; choose one of {', '.join(SHIFTS)}")
    return np.ascontiguousarray(img.reshape(-1, 64))


def _data(x: np.ndarray, y: np.ndarray) -> TaskData:
    xt = torch.from_numpy(x.astype(np.float32)).unsqueeze(1)
    return TaskData(xt, torch.zeros(len(y), 0), torch.from_numpy(y.astype(np.int64)))


def make_task(shift: str, seed: int) -> tuple[TaskData, Task]:
    """Clean digits for the base; disjoint shifted splits to adapt (train), gate (val) and test on."""
    datasets = require("sklearn", "the nesting benchmark's digits task").datasets
    digits = datasets.load_digits()
    x, y = digits.data.astype(np.float32) / 16.0, digits.target
    order = np.random.default_rng(seed).permutation(len(y))
    base_idx, adapt, val, test = order[:900], order[900:1200], order[1200:1450], order[1450:]
    base = _data(x[base_idx], y[base_idx])
    task = Task(
        train=_data(shifted(x[adapt], shift), y[adapt]),
        val=_data(shifted(x[val], shift), y[val]),
        test=_data(shifted(x[test], shift), y[test]),
        reference=_data(x[adapt], y[adapt]),
    )
    return base, task


def train_base(data: TaskData, epochs: int, seed: int) -> BeatClassifier:
    torch.manual_seed(seed)
    model = BeatClassifier(CONFIG)
    opt = torch.optim.Adam(host_parameters(model), lr=3e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(data), generator=gen).split(64):
            opt.zero_grad(set_to_none=True)
            loss_fn(model(data.x[idx], data.aux[idx]), data.y[idx]).backward()
            opt.step()
    return model.eval()


def plans(model: BeatClassifier, budget: Resources, rank: int) -> list[GrowthPlan]:
    flat = GrowthPlan("flat", blueprint="bottleneck_adapter", rank=rank, max_roots=len(model.sites))
    # flat-wide: the largest rank whose single seed fits the budget at the site the nested seed would take
    probe = GrowthPlan("probe", blueprint="bottleneck_adapter", rank=1)
    site = list(model.sites)[-1]
    unit = root_cost(model, site, probe)
    wide = max(1, min(budget.params // unit.params, budget.macs // unit.macs, 64))
    while wide > 1 and root_cost(model, site, GrowthPlan("w", blueprint="bottleneck_adapter", rank=wide)).memory > budget.memory:
        wide -= 1
    return [
        flat,
        GrowthPlan("flat-wide", blueprint="bottleneck_adapter", rank=int(wide), max_roots=1),
        *(GrowthPlan(f"nested-{d}", depth=d, rank=rank) for d in (1, 2, 3)),
    ]


def budget_for(model: BeatClassifier, units: float, rank: int) -> Resources:
    """``units`` nested nodes' worth at the last site (parameters, MACs and memory scale together)."""
    one = root_cost(model, list(model.sites)[-1], GrowthPlan("unit", rank=rank))
    return one.scaled(units)


def _row(r: GrowthReport, flat: GrowthReport | None) -> list[str]:
    ratio = lambda a, b: f"{a / b:.2f}x" if b else "-"  # noqa: E731
    gain = r.test - r.base_test
    flat_gain = (flat.test - flat.base_test) if flat is not None else 0.0
    return [
        r.plan.name, f"{r.base_test:.3f}", f"{r.test:.3f}", f"{gain:+.3f}",
        ratio(gain, flat_gain) if flat is not None and abs(flat_gain) > 1e-9 else "-",
        f"{r.val - r.base_val:+.3f}", f"{r.used.params}/{r.budget.params}", f"{r.used.macs}/{r.budget.macs}",
        f"{r.used.memory}/{r.budget.memory}", str(r.refused), str(r.refused_seeds), str(r.culled),
        str(r.live_levels), f"{r.updates:.0f}", f"{r.seconds:.1f}",
    ]  # fmt: skip


def table(reports: list[GrowthReport], title: str) -> Table:
    t = Table(title=title)
    for col in ("arm", "base test", "test", "gain", "gain vs flat", "val gain", "params", "MACs", "memory B",
                "refusals", "seeds refused", "culled", "live depth", "updates", "s"):  # fmt: skip
        t.add_column(col, justify="left" if col == "arm" else "right")
    flat = next((r for r in reports if r.plan.name == "flat"), None)
    for r in reports:
        t.add_row(*_row(r, flat))
    return t


def tree_table(r: GrowthReport, title: str) -> Table:
    t = Table(title=title)
    for col in ("seed id", "level", "stage", "estimate", "gain", "reason"):
        t.add_column(col, justify="left" if col in ("seed id", "stage", "reason") else "right")
    for c in r.children:
        est = "-" if c["estimate"] is None else f"{c['estimate']:.3g}"
        gain = "-" if c["gain"] is None else f"{c['gain']:+.3f}"
        t.add_row(c["seed_id"], str(c["level"]), c["stage"], est, gain, c["reason"][:110])
    return t


def estimate_quality(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Does the child level's gain estimate (squared gradient norm) rank children as their measured gain does?"""
    from scipy.stats import spearmanr

    pairs = [(c["estimate"], c["gain"]) for r in runs for a in r["arms"] for c in a["children"]
             if c["estimate"] is not None and c["gain"] is not None]  # fmt: skip
    if len(pairs) < 3:
        return {"children": float(len(pairs)), "spearman": float("nan")}
    rho = spearmanr([p[0] for p in pairs], [p[1] for p in pairs]).statistic
    return {"children": float(len(pairs)), "spearman": float(rho)}


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str))
    os.replace(tmp, path)


def run_seed(seed: int, args: argparse.Namespace, settings: WalkSettings) -> dict[str, Any]:
    """Every arm on one data split and base; flat-wide-matched reruns flat-wide with as many updates as nested-3."""
    base_data, task = make_task(args.shift, seed)
    base = train_base(base_data, 5 if args.quick else args.epochs, seed)
    assert task.reference is not None
    clean = accuracy(base, task.reference)
    budget = budget_for(base, args.units, args.rank)
    ctl = HierarchicalController(budget, settings, seed=seed, say=lambda m: console.log(m))
    arms = plans(base, budget, args.rank)
    reports = [ctl.grow(base, task, plan) for plan in arms]
    by_name = {r.plan.name: r for r in reports}
    wide, deep = by_name["flat-wide"], by_name["nested-3"]
    factor = max(1.0, deep.updates / max(1.0, wide.updates))
    matched = WalkSettings(**{**settings.__dict__, "train_steps": round(settings.train_steps * factor),
                              "blend_batches": round(settings.blend_batches * factor)})  # fmt: skip
    plan = GrowthPlan("flat-wide-matched", blueprint="bottleneck_adapter", rank=wide.plan.rank, max_roots=1)
    reports.append(HierarchicalController(budget, matched, seed=seed).grow(base, task, plan))
    console.print(table(reports, f"seed {seed}: digits, shift {args.shift}, base on clean digits {clean:.3f}"))
    console.print(tree_table(deep, f"seed {seed}: the nested-3 seed's children"))
    return {"seed": seed, "base_clean": clean, "budget": budget.to_json(), "arms": [r.to_json() for r in reports]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", type=Path, default=Path("runs/bench_nesting.json"))
    p.add_argument("--seeds", type=int, default=2, help="repeats (data split, base and growth seeds)")
    p.add_argument("--shift", default="flip", choices=SHIFTS)
    p.add_argument("--units", type=float, default=6.0, help="budget in nested nodes at the last site")
    p.add_argument("--rank", type=int, default=2)
    p.add_argument("--epochs", type=int, default=30, help="base training epochs")
    p.add_argument("--quick", action="store_true", help="shorter walks (a smoke run)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    settings = WalkSettings(min_gain=0.002, max_oscillation=0.1)
    if args.quick:
        settings = WalkSettings(**{**settings.__dict__, "train_steps": 15, "blend_batches": 2})
    t0 = time.perf_counter()
    runs = [run_seed(seed, args, settings) for seed in range(args.seeds)]
    summary = _summary(runs)
    console.print(summary_table(summary, args.seeds))
    quality = estimate_quality(runs)
    console.print(f"child-level gain estimate vs measured gain: Spearman {quality['spearman']:+.2f} "
                  f"over {quality['children']:.0f} grown children")  # fmt: skip
    payload = {
        "bench": "nesting", "task": f"sklearn digits 8x8 as 64-sample rows, shift {args.shift}",
        "model": CONFIG.to_dict(), "settings": settings.__dict__, "args": {k: str(v) for k, v in vars(args).items()},
        "rule": RULE, "python": sys.version.split()[0], "torch": torch.__version__, "platform": platform.platform(),
        "seconds": time.perf_counter() - t0, "summary": summary, "estimate_quality": quality, "runs": runs,
    }  # fmt: skip
    write_json(args.json, payload)
    console.print(f"wrote {args.json} in {payload['seconds']:.0f} s")
    return 0


def summary_table(summary: dict[str, dict[str, float]], seeds: int) -> Table:
    t = Table(title=f"mean over {seeds} seed(s)")
    for col in ("arm", "test gain", "gain vs flat", "val gain", "params", "refusals", "culled", "updates"):
        t.add_column(col, justify="left" if col == "arm" else "right")
    for name, v in summary.items():
        vs_flat = "-" if v["gain_vs_flat"] != v["gain_vs_flat"] else f"{v['gain_vs_flat']:.2f}x"  # NaN: flat gained 0
        t.add_row(name, f"{v['gain_test']:+.3f}", vs_flat, f"{v['gain_val']:+.3f}",
                  f"{v['params']:.0f}", f"{v['refused']:.1f}", f"{v['culled']:.1f}", f"{v['updates']:.0f}")  # fmt: skip
    return t


def _summary(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean over seeds per arm, with the ratio of its test gain to flat's."""
    out: dict[str, dict[str, float]] = {}
    names = [a["plan"]["name"] for a in runs[0]["arms"]]
    for name in names:
        arms = [a for r in runs for a in r["arms"] if a["plan"]["name"] == name]
        keys = ("gain_test", "gain_val", "refused", "culled", "updates")
        out[name] = {k: float(np.mean([a[k] for a in arms])) for k in keys}
        out[name]["params"] = float(np.mean([a["used"]["params"] for a in arms]))
    flat = out.get("flat", {}).get("gain_test", 0.0)
    for v in out.values():
        v["gain_vs_flat"] = v["gain_test"] / flat if abs(flat) > 1e-9 else float("nan")
    return out


if __name__ == "__main__":
    raise SystemExit(main())
