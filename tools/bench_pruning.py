"""Benchmark pruning seeds: parameters saved against accuracy, per strategy, at 25 / 50 / 75 % of the seeds.

Run from the repo root (about 1-2 minutes on two cores):

    .venv/bin/python tools/bench_pruning.py --json runs/bench_pruning.json

The task is scikit-learn's 8x8 digits (shipped with the package, offline) read as a 64-sample window by
a BeatClassifier (``window=64, n_rr=0, n_classes=10``): a base trained on clean digits, then one seed per
site grown by the host's own lifecycle (:func:`kasmina_edge.host.condition_trial.run_trial`: G1-G4) on
corrupted digits (noise and a contrast loss), each on the base alone; the fossilized ones are applied
together (:func:`kasmina_edge.host.conditions_morph.seeded_model`). That seeded model is what is pruned.

For each strategy (magnitude, utilization, gain per parameter, and a random order as the control) and
level (hidden units, whole seeds), :func:`kasmina_edge.host.pruning.prune_schedule` prunes through each
target with the G4-style gate (validation accuracy within ``--tolerance`` of the unpruned model's);
each row: seed parameters saved, accuracy on the validation and held-out test digits (corrupted, and
clean), the steps the gate refused and rolled back. Everything is run side by side in one process.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from kasmina_edge.contracts.optional import require
from kasmina_edge.ecg.dataset import BeatDataset
from kasmina_edge.host.condition_trial import TrialResult, run_trial
from kasmina_edge.host.conditions_morph import seeded_model
from kasmina_edge.host.data import Condition, ConditionSplit
from kasmina_edge.host.model import BeatClassifier, ModelConfig
from kasmina_edge.host.morph_config import MORPH_PRESETS
from kasmina_edge.host.pruning import (
    LEVELS,
    STRATEGIES,
    Candidate,
    PruneGate,
    PruneRun,
    Strategy,
    Validation,
    compact,
    count_params,
    prune_schedule,
)
from kasmina_edge.host.pruning.strategies import candidates
from kasmina_edge.host.pruning.units import seed_params, unit_params
from kasmina_edge.host.tamiyo.masks import Budget

DIGITS = ModelConfig(
    name="digits", channels=(16, 32, 32, 32), kernels=(5, 3, 3, 3), convs_per_block=1, head_hidden=32,
    chunks=(4, 4, 4, 4), window=64, n_rr=0, n_classes=10,
)  # fmt: skip
# One seed per site, blueprints with hidden units of different kinds and sizes.
SEEDS = (("site0", "bottleneck_adapter"), ("site1", "residual_mlp"), ("site2", "glu"), ("site3", "low_rank_residual"))
CONDITION = Condition("digits_noise", "digits: gaussian noise 0.35 and contrast x0.6", "artifact")


# --------------------------------------------------------------------------- data and models


def _dataset(x: np.ndarray, y: np.ndarray, name: str) -> BeatDataset:
    n = len(y)
    return BeatDataset(x.reshape(n, 1, 64).astype(np.float32), np.zeros((n, 0), np.float32), y.astype(np.int64),
                       np.full(n, name), np.arange(n, dtype=np.int64))  # fmt: skip


def corrupt(x: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.6 * x + 0.35 * rng.standard_normal(x.shape)).astype(np.float32)


def digits_data(seed: int) -> dict[str, BeatDataset]:
    datasets = require("sklearn", "the pruning benchmark's digits").datasets
    d = datasets.load_digits()
    x, y = (d.data / 16.0).astype(np.float32), d.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    n_tr, n_va = int(0.6 * len(y)), int(0.2 * len(y))
    parts = {"train": order[:n_tr], "val": order[n_tr : n_tr + n_va], "test": order[n_tr + n_va :]}
    out: dict[str, BeatDataset] = {}
    for k, (name, idx) in enumerate(parts.items()):
        out[f"{name}_clean"] = _dataset(x[idx], y[idx], f"{name}_clean")
        out[name] = _dataset(corrupt(x[idx], seed + 1 + k), y[idx], name)
    return out


def train_base(train: BeatDataset, epochs: int, seed: int) -> BeatClassifier:
    torch.manual_seed(seed)
    model = BeatClassifier(DIGITS)
    for site in model.sites.values():
        site.telemetry_enabled = False  # type: ignore[assignment]  # no seed yet: nothing to watch
    opt = torch.optim.Adam(model.host_parameters(), lr=3e-3, weight_decay=1e-4)
    x, y = torch.from_numpy(train.windows), torch.from_numpy(train.labels)
    rr = torch.zeros(len(y), 0)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(y), generator=gen).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx], rr[idx]), y[idx]).backward()  # type: ignore[no-untyped-call]
            opt.step()
    return model.eval()


def grow_seeds(base: BeatClassifier, data: dict[str, BeatDataset], seed: int) -> tuple[nn.Module, list[TrialResult]]:
    cfg = dataclasses.replace(
        MORPH_PRESETS["tiny"], target=None, lr=3e-3, min_gain=0.0, global_tolerance=0.05, max_drift=10.0,
        drift_penalty=0.0, gate_min_support=5, seed=seed,
    )  # fmt: skip
    split = ConditionSplit(CONDITION, data["train"], data["val"], data["test"], [], 0, adapt_clean=data["train_clean"])
    budget = Budget(None, 10**6, 10**9)
    for site in base.sites.values():
        site.telemetry_enabled = False  # type: ignore[assignment]
    trials = [
        run_trial(base, split, data["val_clean"], site, blueprint, "fixed_ramp", 1.0, budget, cfg, seed=seed)
        for site, blueprint in SEEDS
    ]
    model: nn.Module = base
    for t in trials:
        if t.fossilized:
            model = seeded_model(model, t)
    return model.eval(), trials


def validation(ds: BeatDataset) -> Validation:
    return Validation((torch.from_numpy(ds.windows), torch.from_numpy(ds.rr)), torch.from_numpy(ds.labels), 10)


def random_order(seed: int) -> Strategy:
    """The control: candidates in a random (seeded) order."""

    def strategy(model: nn.Module, val: Validation, level: str) -> list[Candidate]:
        units = candidates(model, level)
        random.Random(seed + len(units)).shuffle(units)
        return [Candidate(u, float(i), seed_params(model, u.seed) if u.whole_seed else unit_params(model, u))
                for i, u in enumerate(units)]  # fmt: skip

    return strategy


# --------------------------------------------------------------------------- the bench


def bench_runs(model: nn.Module, data: dict[str, BeatDataset], args: argparse.Namespace,
               base_test: float) -> list[dict[str, Any]]:  # fmt: skip
    val, tests = validation(data["val"]), {k: validation(data[k]) for k in ("test", "test_clean")}
    seeded_test = tests["test"].evaluate(model)
    strategies: dict[str, Strategy] = {**STRATEGIES, "random": random_order(args.seed)}
    gate = PruneGate(tolerance=args.tolerance, bootstrap=args.bootstrap)
    rows = []
    for level in args.levels:
        for name, strategy in strategies.items():
            run: PruneRun = prune_schedule(model, strategy, val, args.targets, level=level, gate=gate,
                                           step_fraction=args.step, name=name)  # fmt: skip
            for t in run.targets:
                shrunk = compact(t.model)  # physically: the masked units leave the tensors
                physical = sum(p.numel() for p in t.model.parameters())
                test = tests["test"].evaluate(t.model)
                # how much of the seeds' gain on the held-out digits the pruned seeds still give
                kept = (test - base_test) / (seeded_test - base_test) if seeded_test != base_test else None
                rows.append({
                    "strategy": name, "level": level, **t.to_dict(), "units_shrunk": shrunk,
                    "physical_params": physical, "rollbacks": run.rollbacks, "seconds": round(run.seconds, 2),
                    "test": test, "test_clean": tests["test_clean"].evaluate(t.model), "seed_gain_kept": kept,
                    "refused": [s.removed for s in run.steps if not s.accepted],
                })  # fmt: skip
    return rows


def reference_row(name: str, model: nn.Module, data: dict[str, BeatDataset]) -> dict[str, Any]:
    p = count_params(model)
    return {
        "model": name, "host_params": p.host, "seed_params": p.seeds,
        "physical_params": sum(q.numel() for q in model.parameters()),  # dormant seed banks included
        "val": validation(data["val"]).evaluate(model), "test": validation(data["test"]).evaluate(model),
        "test_clean": validation(data["test_clean"]).evaluate(model),
    }  # fmt: skip


def print_tables(refs: list[dict[str, Any]], rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(150, Console().width))
    t = Table(title="models (accuracy, corrupted digits unless clean)")
    for col in ("model", "host params", "seed params", "val", "test", "test clean"):
        t.add_column(col, justify="left" if col == "model" else "right")
    for r in refs:
        t.add_row(r["model"], str(r["host_params"]), str(r["seed_params"]), f"{r['val']:.3f}", f"{r['test']:.3f}",
                  f"{r['test_clean']:.3f}")  # fmt: skip
    console.print(t)
    seeded = refs[-1]
    t = Table(title=f"pruning the seeds ({seeded['seed_params']} params): saved vs accuracy, gate = val within tolerance")
    for col in ("level", "strategy", "target", "seeds saved", "model saved", "seed params", "val", "test", "Δtest",
                "gain kept", "test clean", "rollbacks", "s"):  # fmt: skip
        t.add_column(col, justify="left" if col in ("level", "strategy") else "right")
    total = seeded["host_params"] + seeded["seed_params"]
    for r in rows:
        reached = "" if r["reached"] else " (stuck)"
        t.add_row(r["level"], r["strategy"], f"{100 * r['target']:.0f} %", f"{100 * r['saved_fraction']:.1f} %{reached}",
                  f"{100 * (seeded['seed_params'] - r['seed_params']) / total:.1f} %", str(r["seed_params"]),
                  f"{r['metric']:.3f}", f"{r['test']:.3f}", f"{r['test'] - seeded['test']:+.3f}",
                  "-" if r["seed_gain_kept"] is None else f"{100 * r['seed_gain_kept']:.0f} %",
                  f"{r['test_clean']:.3f}", str(r["rollbacks"]), f"{r['seconds']:.1f}")  # fmt: skip
    console.print(t)


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(payload, f, indent=2)
    os.replace(tmp, path)


def _fractions(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--targets: comma-separated fractions, got {text!r}") from None


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, default=Path("runs/bench_pruning.json"))
    ap.add_argument("--targets", type=_fractions, default=[0.25, 0.5, 0.75])
    ap.add_argument("--levels", type=lambda s: s.split(","), default=list(LEVELS))
    ap.add_argument("--tolerance", type=float, default=0.01, help="accuracy the gate lets pruning cost (val)")
    ap.add_argument("--bootstrap", action="store_true", help="also gate on the paired bootstrap's lower bound "
                    "(evidence.paired_bootstrap judges macro-F1 over classes 0-3 only: the ECG gate classes)")
    ap.add_argument("--step", type=float, default=0.125, help="step size, fraction of the seeds' parameters")
    ap.add_argument("--epochs", type=int, default=25, help="base training epochs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    args = ap.parse_args(argv)
    threads = torch.get_num_threads()
    # one thread: on a shared two-core machine two threads per process were 50x slower (oversubscribed)
    torch.set_num_threads(args.threads)
    try:
        return run(args)
    finally:
        torch.set_num_threads(threads)


def run(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    data = digits_data(args.seed)
    base = train_base(data["train_clean"], args.epochs, args.seed)
    seeded, trials = grow_seeds(base, data, args.seed)
    if count_params(seeded).seeds == 0:
        print("no seed fossilized: nothing to prune", file=sys.stderr)
        return 1
    refs = [reference_row("base", base, data), reference_row("base + seeds", seeded, data)]
    rows = bench_runs(seeded, data, args, refs[0]["test"])
    print_tables(refs, rows)
    payload = {
        "bench": "pruning", "task": "sklearn digits 8x8 as a 64-sample window; corrupted: " + CONDITION.description,
        "config": {k: v for k, v in vars(args).items() if k != "json"}, "models": refs,
        "seeds": [{"site": t.site, "blueprint": t.blueprint, "final_stage": t.final_stage, "reason": t.reason,
                   "param_count": t.param_count, "baseline_val": t.baseline_val, "seed_val": t.seed_val}
                  for t in trials],
        "runs": rows, "seconds": round(time.perf_counter() - t0, 1),
    }  # fmt: skip
    write_json(args.json, payload)
    print(f"wrote {args.json} ({payload['seconds']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
