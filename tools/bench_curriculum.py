"""Benchmark the curriculum: every stage's base, base + seeds and full fine-tuning side by side, on each stage's
held-out data, with the parameters each arm costs and the seeds' share of what fine-tuning recovers.

    .venv/bin/python tools/bench_curriculum.py [--stages 0-6] [--quick] [--data ../shared/data] \
        [--json runs/bench_curriculum.json]

Every stage runs (``keep_going``), so one stage's failure does not hide the others' figures.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console


def _row(outcome: Any) -> dict[str, Any]:
    r = outcome.report
    row: dict[str, Any] = {"stage": outcome.index, "status": outcome.status, "reason": outcome.reason,
                           "seconds": round(outcome.seconds, 1)}  # fmt: skip
    if r is None:
        return row
    ft = r.fine_tuned
    gap = None if ft is None else ft.metric - r.base.metric
    row.update(
        name=r.name, metric=r.metric, target=r.target, base=r.base.metric, seeded=r.seeded.metric,
        fine_tuned=None if ft is None else ft.metric, base_params=r.base.params, seed_params=r.seeded.params,
        fine_tune_params=None if ft is None else ft.params,
        # what the seeds win back of what full fine-tuning wins, and at what share of its trained parameters
        # (not stated where fine-tuning itself gains under a point: the ratio would be noise)
        share_of_fine_tune_gain=None if gap is None or gap < 0.01 else (r.seeded.metric - r.base.metric) / gap,
        param_ratio=None if ft is None or not ft.params else r.seeded.params / ft.params,
        checks=r.checks, notes=r.notes,
    )  # fmt: skip
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stages", default="0-6")
    ap.add_argument("--quick", action="store_true", help="the quick runs (what CI's slow tier runs)")
    ap.add_argument("--data", type=Path, default=None, help="real data for the ECG stage (mitdb/, nstdb/)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=Path("runs/bench_curriculum.json"))
    args = ap.parse_args()

    from kasmina_edge.cli.curriculum import outcome_table
    from kasmina_edge.curriculum.registry import parse_stages
    from kasmina_edge.curriculum.runner import run_curriculum
    from kasmina_edge.host.experiment import atomic_write_json

    con = Console(width=160)  # the table's nine columns, also when stdout is a file
    with tempfile.TemporaryDirectory(prefix="bench-curriculum-") as tmp:
        run = run_curriculum(parse_stages(args.stages), Path(tmp), quick=args.quick, seed=args.seed, data=args.data,
                             keep_going=True, say=lambda m: con.print(f"[dim]{m}[/]"))  # fmt: skip
    con.print(outcome_table(run.outcomes))
    rows = [_row(o) for o in run.outcomes]
    for r in rows:
        if r.get("share_of_fine_tune_gain") is not None:
            con.print(f"stage {r['stage']}: seeds win {100 * r['share_of_fine_tune_gain']:.0f} % of fine-tuning's gain "
                      f"with {100 * (r['param_ratio'] or 0):.1f} % of its trained parameters")  # fmt: skip
    atomic_write_json(args.json, {"quick": args.quick, "seconds": run.seconds, "passed": run.passed, "stages": rows})
    con.print(f"JSON: {args.json}")
    print(json.dumps({"passed": run.passed, "seconds": round(run.seconds, 1)}))


if __name__ == "__main__":
    main()
