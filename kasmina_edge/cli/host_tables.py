"""What the host commands print: per-class metrics, the records of a split, morph's results and lifecycle
traces (condition trials and patient seeds), the real-record conditions table and Tamiyo's line."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.table import Table

from kasmina_edge.ecg.types import AAMI_CLASSES

if TYPE_CHECKING:
    from kasmina_edge.host.morph import MorphResult
    from kasmina_edge.host.records import RecordSplit
    from kasmina_edge.host.train import ClassMetrics


def pct(v: float | None) -> str:
    return "-" if v is None or v != v else f"{100 * v:.1f}"


def metrics_table(title: str, m: ClassMetrics) -> Table:
    t = Table(title=title)
    t.add_column("class")
    t.add_column("beats", justify="right")
    t.add_column("Se %", justify="right")
    t.add_column("+P %", justify="right")
    t.add_column("F1 %", justify="right")
    for i, c in enumerate(AAMI_CLASSES):
        t.add_row(c, str(int(m.support[i])), pct(m.se[i]), pct(m.ppv[i]), pct(m.f1[i]))
    t.add_row("[bold]macro-F1", "", "", "", f"[bold]{pct(m.macro_f1)}")
    t.add_row("accuracy", "", "", "", pct(m.accuracy))
    return t


def records_table(split: RecordSplit) -> Table:
    """Beats per AAMI class of every record, by side, with each side's total."""
    leads = {n: s.lead for n, s in split.plan.summaries.items()}
    mixed = len(set(leads.values())) > 1  # e.g. MIT-BIH 114, whose first lead is V5, not MLII
    one_lead = "" if mixed else f", lead {next(iter(leads.values()))}"
    t = Table(title=f"records (patient-wise split){one_lead}")
    t.add_column("record")
    t.add_column("side")
    if mixed:
        t.add_column("lead")
    for c in AAMI_CLASSES:
        t.add_column(c, justify="right")
    t.add_column("beats", justify="right")
    for side, names in (("training", split.train_records), ("validation", split.val_records)):
        for n in names:
            counts = split.per_record[n].class_counts()
            lead = [leads[n]] if mixed else []
            t.add_row(n, side, *lead, *(str(counts[c]) for c in AAMI_CLASSES), str(len(split.per_record[n])))
        total = split.counts(names)
        t.add_row(f"[bold]{side}", f"[bold]{len(names)} records", *([""] if mixed else []),
                  *(f"[bold]{total[c]}" for c in AAMI_CLASSES), f"[bold]{sum(total.values())}",
                  end_section=True)  # fmt: skip
    return t


def metrics_json(m: ClassMetrics) -> dict[str, Any]:
    """Per-class Se, +P and F1 (null where a class never occurs), macro-F1 and the confusion matrix."""
    return {"classes": {c: {"support": m.support[i], "se": m.se[i], "ppv": m.ppv[i], "f1": m.f1[i]}
                        for i, c in enumerate(AAMI_CLASSES)},
            "macro_f1": m.macro_f1, "confusion": m.confusion}


def _stage_style(stage: str) -> str:
    return {"FOSSILIZED": "green", "CULLED": "red", "DORMANT": "yellow"}.get(stage, "white")


def short_reason(stage: str, reason: str) -> str:
    """'gate_G4_failed: gain …' → 'G4✗ gain …' (the trace has the whole reason)."""
    if stage == "FOSSILIZED":
        return "[green]fossilized"
    if reason.startswith("gate_") and "_failed" in reason:
        gate, _, why = reason[5:].partition("_failed: ")
        return f"[red]{gate}✗[/] {why.split(';')[0][:40]}"
    return f"[red]{reason[:46]}"


def results_table(result: MorphResult) -> Table:
    from rich import box

    t = Table(title="morph results: macro-F1 % on the condition's validation data", box=box.SIMPLE_HEAD,
              pad_edge=False, title_justify="left")  # fmt: skip
    t.add_column("condition")
    t.add_column("base", justify="right")
    t.add_column("seed", justify="right")
    t.add_column("clean", justify="right")
    t.add_column("site\nblueprint", no_wrap=True)  # names stay whole; the outcome wraps
    t.add_column("params", justify="right")
    t.add_column("outcome", overflow="fold")
    base_params = int(result.library.meta.get("base_params", 0)) or 1
    for o in result.outcomes:
        if not o.trials:
            t.add_row(o.condition, pct(o.base_val), "-", "-", "-", "-", f"[yellow]no action: {o.decision.get('reason', '')}")
        for tr in o.trials:
            clean = f"{pct(tr.clean_host)}→{pct(tr.clean_seed)}" if tr.clean_seed is not None else "-"
            t.add_row(
                tr.condition, pct(tr.baseline_val), pct(tr.seed_val), clean, f"{tr.site}\n{tr.blueprint}",
                f"{100 * tr.param_count / base_params:.1f}%", short_reason(tr.final_stage, tr.reason),
            )  # fmt: skip
    return t


def trace(history: list[dict[str, Any]], reason_chars: int | None = None) -> str:
    """A seed's lifecycle in one line: each transition with the gate verdict that let it through, each
    failed gate with its reason (cut to ``reason_chars``)."""
    parts: list[str] = []
    pending: dict[str, Any] | None = None
    for ev in history:
        if ev.get("event") == "gate":
            pending = ev
            if not ev.get("passed"):
                parts.append(f"[red]{ev['gate']}✗ {str(ev.get('reason', ''))[:reason_chars]}[/]")
        elif ev.get("event") == "transition":
            gate = f"[green]{pending['gate']}✓[/] " if pending is not None and pending.get("passed") else ""
            pending = None
            if not parts:
                parts.append(str(ev["from"]))
            parts.append(f"{gate}[{_stage_style(str(ev['to']))}]{ev['to']}[/]")
    return " → ".join(parts)


def lifecycle_trace(result: MorphResult) -> Table:
    t = Table(title="lifecycle trace (every transition, with its gate verdict)")
    t.add_column("seed")
    t.add_column("trace")
    for tr in result.trials():
        t.add_row(f"{tr.condition}\n{tr.seed_id}\n{tr.blueprint}", trace(tr.history) or "-")
    return t


def tamiyo_line(tamiyo: dict[str, Any]) -> str:
    if not tamiyo:
        return "Tamiyo policy: not trained"
    return (
        f"Tamiyo policy ({tamiyo['policy_params']:,} params): imitation agreement "
        f"{100 * tamiyo['imitation_agreement']:.0f}% (chance {100 * tamiyo['imitation_chance']:.0f}%, "
        f"majority {100 * tamiyo['imitation_majority']:.0f}%); mean reward heuristic {tamiyo['reward_heuristic']:+.3f}, "
        f"policy after imitation {tamiyo['reward_policy_imitation']:+.3f}, after REINFORCE "
        f"{tamiyo['reward_policy_reinforce']:+.3f}; decision latency p50 {tamiyo['decision_latency_p50_us']:.0f} µs, "
        f"p99 {tamiyo['decision_latency_p99_us']:.0f} µs"
    )


SHORT_VERDICT = {"shipped": "[green]shipped", "nothing_to_recover": "[yellow]nothing to\nrecover",
                 "culled": "[red]culled\n(gates)", "did_not_help": "[red]did not\nhelp", "no_seed": "[red]no seed"}


def conditions_table(result: Any) -> Table:
    """Per condition cell, on the held-out records: base clean, base in the condition, base + seed, fine-tuning."""
    from rich import box

    t = Table(title="condition seeds: macro-F1 % (N/S/V/F) on held-out records", box=box.SIMPLE_HEAD,
              pad_edge=False, title_justify="left")  # fmt: skip
    for col in ("condition", "gate\ndrop", "clean", "base", "seed", "fine-\ntune", "recov-\nered", "params"):
        t.add_column(col, justify="left" if col == "condition" else "right")
    t.add_column("verdict")
    for c in result.cells:
        f = c.held_out.figures() if c.held_out is not None else {}
        rec = f.get("recovery")
        frac = c.param_fraction
        t.add_row(
            c.cell.label, f"{100 * c.drop:+.1f}", pct(f.get("base_clean")), pct(f.get("base")),
            pct(f.get("seed")) if c.verdict.ships else "-", pct(f.get("finetune")),
            "-" if rec is None else f"{100 * rec:.0f}%", "-" if frac is None else f"{100 * frac:.1f}%",
            SHORT_VERDICT.get(c.verdict.code, c.verdict.code),
        )  # fmt: skip
    return t


def patient_trace(seed: Any) -> Table:
    t = Table(title=f"patient {seed.record}: each seed's lifecycle on the host (gate verdicts)")
    t.add_column("seed")
    t.add_column("trace")
    for g in seed.seeds:
        label = f"{g.seed_id}\n{g.plan.blueprint} {g.plan.params} · {g.plan.param_count:,} params"
        t.add_row(label, trace(g.history, 60) or f"[red]{g.reason}")
    return t
