"""Stage 1, accuracy: beat by beat against the records' annotations (``ecg.evaluate``: the project's EC57
matching, 150 ms), the first minutes left out as the plan says (AAMI: 5). The device as deployed (the
controller on) must meet the plan's floors, gross over the records; each seed kernel, forced live for whole
records, may lose at most ``max_kernel_drop`` of gross macro-F1 against the base alone."""

from __future__ import annotations

import math
from typing import Any

from kasmina_edge.ecg.evaluate import REPORTED_CLASSES, Evaluation, gross
from kasmina_edge.validate.context import ValidationContext
from kasmina_edge.validate.device_run import BASE_ONLY, kernel_groups, stream_record
from kasmina_edge.validate.result import StageResult, judged

INDEX, NAME = 1, "accuracy"


def pct(v: float) -> str:
    return "-" if math.isnan(v) else f"{100 * v:.1f} %"


def figures(ev: Evaluation) -> dict[str, Any]:
    """The few numbers a table row or a bar needs."""
    out: dict[str, Any] = {"name": ev.name, "beats": ev.reference_beats, "qrs_se": ev.beat_se,
                           "qrs_ppv": ev.beat_ppv, "macro_f1": ev.macro_f1()}
    for c in REPORTED_CLASSES:
        out[c] = {"n": ev.support(c), "se": ev.se(c), "ppv": ev.ppv(c), "f1": ev.f1(c)}
    return out


def floors(ev: Evaluation, ctx: ValidationContext, what: str) -> list[str]:
    """The plan's accuracy floors ``ev`` misses, one line each."""
    p = ctx.plan.accuracy
    out: list[str] = []
    if not ev.beat_se >= p.qrs_se_min:
        out.append(f"{what}: QRS Se {pct(ev.beat_se)} < {pct(p.qrs_se_min)}")
    if not ev.beat_ppv >= p.qrs_ppv_min:
        out.append(f"{what}: QRS +P {pct(ev.beat_ppv)} < {pct(p.qrs_ppv_min)}")
    if not ev.macro_f1() >= p.macro_f1_min:
        out.append(f"{what}: macro-F1 {pct(ev.macro_f1())} < {pct(p.macro_f1_min)}")
    for cls, floor in p.class_floors.items():
        if ev.support(cls) < p.min_support:
            continue
        if not ev.se(cls) >= floor.se:
            out.append(f"{what}: {cls} Se {pct(ev.se(cls))} < {pct(floor.se)} ({ev.support(cls)} beats)")
        if not ev.ppv(cls) >= floor.ppv:
            out.append(f"{what}: {cls} +P {pct(ev.ppv(cls))} < {pct(floor.ppv)}")
    return out


def run(ctx: ValidationContext) -> StageResult:
    assert ctx.image is not None
    p = ctx.plan.accuracy
    device: list[Evaluation] = []
    base: list[Evaluation] = []
    groups = kernel_groups(ctx.image)
    forced: dict[str, list[Evaluation]] = {g: [] for g in groups}
    latencies: list[float] = []
    transitions: list[dict[str, Any]] = []
    for ref in ctx.records:
        rec = ctx.record(ref)
        ctx.say(f"accuracy: {ref.name} ({rec.seconds / 60:.1f} min), base, device, {len(forced)} kernel(s)")
        b = stream_record(ctx.image, rec, config=BASE_ONLY)
        ctx.base_runs[ref.name] = b
        base.append(b.evaluate(rec, p.exclude_first_s))
        d = stream_record(ctx.image, rec)
        device.append(d.evaluate(rec, p.exclude_first_s))
        latencies += d.beat_latency_s
        transitions += [{"record": ref.name, "t": e.t, "kernel": e.kernel, "site": e.site,
                         "to": e.transition.dst.name, "reason": e.transition.reason} for e in d.transitions]
        for g, names in groups.items():
            forced[g].append(stream_record(ctx.image, rec, forced=names).evaluate(rec, p.exclude_first_s))
    g_dev, g_base = gross(device), gross(base)
    failures = floors(g_dev, ctx, "device, gross")
    kernels: dict[str, Any] = {}
    for k, evs in forced.items():
        gk = gross(evs, name=k)
        drop = g_base.macro_f1() - gk.macro_f1()
        kernels[k] = {"kernels": groups[k], "macro_f1": gk.macro_f1(), "drop": drop, **figures(gk)}
        if not drop <= p.max_kernel_drop:
            what = f"kernel {k}" if groups[k] == [k] else f"kernels of {k} ({', '.join(groups[k])})"
            failures.append(f"{what} forced live: gross macro-F1 {pct(gk.macro_f1())} vs base "
                            f"{pct(g_base.macro_f1())} (loses {100 * drop:.1f} points > {100 * p.max_kernel_drop:.1f})")
    ctx.figures["confusion"] = {"name": "device, gross", "matrix": g_dev.confusion.tolist()}
    ctx.figures["per_record"] = [figures(e) for e in device]
    ctx.figures["host_beat_latency_s"] = latencies
    ctx.figures["transitions"] = transitions
    metrics = {"device_gross": figures(g_dev), "base_gross": figures(g_base),
               "records": [figures(e) for e in device], "kernels_forced": kernels}
    ok = (f"{len(device)} record(s), {g_dev.reference_beats:,} beats: QRS Se {pct(g_dev.beat_se)}, +P "
          f"{pct(g_dev.beat_ppv)}, macro-F1 {pct(g_dev.macro_f1())}; no kernel loses more than "
          f"{100 * p.max_kernel_drop:.1f} points")
    return judged(INDEX, NAME, failures, ok, criteria=ctx.plan.criteria("accuracy"), metrics=metrics)
