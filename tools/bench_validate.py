"""Benchmark `kasmina-edge validate`: stages 0-4 on one record, timed per stage, side by side with the signal
each stage streamed (multiples of real time). Prints a table, writes JSON.

    .venv/bin/python tools/bench_validate.py --bundle bundle.kedge --keys ~/.config/kasmina-edge/keys \
        --data wfdb:../shared/data/mitdb --records 100 [--kernels seed-100.kedge] [--plan plan.toml] \
        [--json runs/bench_validate.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

STAGES = ("artifacts", "accuracy", "robustness", "device", "faults")


def _streamed_s(name: str, metrics: dict, record_s: float, kernels: int, conditions: int, plan) -> float:  # type: ignore[no-untyped-def]
    """Seconds of ECG each stage pushed through a runtime (to state its speed as a multiple of real time)."""
    if name == "accuracy":
        return record_s * (2 + kernels)  # base, device, each kernel group forced live
    if name == "robustness":
        return record_s * 2 * conditions  # base and device per condition
    if name == "device":
        return min(plan.device.emulator_seconds, record_s)
    if name == "faults":
        return min(180.0, record_s) * (2 if kernels else 1)  # the link stream, and the NaN-kernel stream
    return 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--keys", type=Path, default=None)
    ap.add_argument("--data", default="wfdb:../shared/data/mitdb")
    ap.add_argument("--records", default="100")
    ap.add_argument("--plan", type=Path, default=None)
    ap.add_argument("--kernels", type=Path, action="append", default=[], help="a kernel-only bundle on the base")
    ap.add_argument("--json", type=Path, default=Path("runs/bench_validate.json"))
    args = ap.parse_args()

    from kasmina_edge.validate.context import ValidationContext
    from kasmina_edge.validate.pipeline import run_stages
    from kasmina_edge.validate.plan import load_plan
    from kasmina_edge.validate.records import resolve_records

    con = Console()
    plan = load_plan(args.plan)
    refs = resolve_records(args.data, args.records)[:1]
    with tempfile.TemporaryDirectory(prefix="bench-validate-") as tmp:
        ctx = ValidationContext(bundle_path=args.bundle, plan=plan, records=refs, workdir=Path(tmp), keys=args.keys,
                                kernel_paths=args.kernels, say=lambda m: con.print(f"[dim]{m}[/]"))
        t0 = time.perf_counter()
        run = run_stages(ctx, keep_going=True, only=set(STAGES))
        total = time.perf_counter() - t0
        record_s = ctx.record(refs[0]).seconds
        from kasmina_edge.validate.device_run import kernel_groups

        kernels = len(kernel_groups(ctx.image)) if ctx.image is not None else 0
    conditions = len(plan.robustness.noise) * len(plan.robustness.snr_db) + int(plan.robustness.lead_change)
    rows = []
    for s in run.stages:
        if s.name not in STAGES:
            continue
        streamed = _streamed_s(s.name, s.metrics, record_s, kernels, conditions, plan)
        rows.append({"stage": s.index, "name": s.name, "status": s.status, "seconds": round(s.seconds, 3),
                     "share": s.seconds / total if total else 0.0, "signal_s": streamed,
                     "x_realtime": streamed / s.seconds if s.seconds > 0 and streamed else None, "reason": s.reason})
    t = Table(title=f"validate stages 0-4 on {refs[0].name} ({record_s / 60:.1f} min), {args.bundle.name}")
    for col in ("#", "stage", "result", "seconds", "share", "signal streamed", "x real time"):
        t.add_column(col, justify="right" if col not in ("stage", "result") else "left")
    for r in rows:
        t.add_row(str(r["stage"]), r["name"], r["status"], f"{r['seconds']:.2f}", f"{100 * r['share']:.0f} %",
                  f"{r['signal_s'] / 60:,.1f} min" if r["signal_s"] else "-",
                  f"{r['x_realtime']:,.0f}x" if r["x_realtime"] else "-")
    t.add_row("", "total", "pass" if all(r["status"] == "pass" for r in rows) else "fail", f"{total:.2f}", "100 %",
              f"{sum(r['signal_s'] for r in rows) / 60:,.1f} min",
              f"{sum(r['signal_s'] for r in rows) / total:,.0f}x" if total else "-")
    con.print(t)
    out = {"bundle": str(args.bundle), "record": refs[0].name, "record_s": record_s, "kernels": kernels,
           "robustness_conditions": conditions, "total_s": round(total, 3), "stages": rows,
           "plan": plan.source}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=1))
    con.print(f"JSON: {args.json}")


if __name__ == "__main__":
    main()
