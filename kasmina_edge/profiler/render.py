"""Rich tables of a profiler report: the subject, one comparison row per profile, per-artifact detail."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from kasmina_edge.profiler.report import DECISION_BUDGET_S, PER_BEAT_BUDGET_S, ProfileResult, Report


def fmt_s(s: float | None) -> str:
    if s is None:
        return "-"
    if s >= 1.0:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.1f} us"


def fmt_j(j: float | None) -> str:
    if j is None:
        return "-"
    if j >= 1.0:
        return f"{j:.2f} J"
    if j >= 1e-3:
        return f"{j * 1e3:.2f} mJ"
    return f"{j * 1e6:.1f} uJ"


def fmt_b(n: int | None) -> str:
    if n is None:
        return "-"
    if n >= 1 << 20:
        return f"{n / (1 << 20):.1f} MiB"
    if n >= 1 << 10:
        return f"{n / (1 << 10):.1f} KiB"
    return f"{n} B"


def _mark(ok: bool | None) -> str:
    return "-" if ok is None else "[green]pass[/]" if ok else "[red]fail[/]"


def subject_table(report: Report) -> Table:
    s = report.subject
    title = f"{s.kind} {s.name}" + (f" (target {s.target}, built for {s.built_for})" if s.target else "")
    t = Table(title=title)
    for col in (
        "artifact",
        "kind",
        "site",
        "format",
        "bits",
        "bytes",
        "MACs",
        "params",
        "peak act",
        "TFLM arena",
        "ops",
    ):
        t.add_column(col, justify="right" if col not in ("artifact", "kind", "format") else "left")
    for a in s.artifacts:
        g = a.graph
        t.add_row(
            a.name,
            a.facts.kind,
            "-" if a.facts.site is None else str(a.facts.site),
            a.facts.format,
            str(a.facts.bits),
            fmt_b(a.facts.bytes),
            f"{g.macs:,}",
            fmt_b(g.param_bytes),
            fmt_b(g.plan.peak_bytes),
            fmt_b(a.arena.total_bytes) if a.arena else "-",
            str(len(g.ops)),
        )
    return t


def _estimate_marks(name: str) -> tuple[str, str]:
    """'~' for the timing and the energy cells of hardware profile ``name`` when they rest on estimated
    numbers (its [sources] table); '' where the catalog does not know the profile."""
    from kasmina_edge.core.catalog import hardware
    from kasmina_edge.core.profiles import CatalogError, estimated

    try:
        fields = estimated(hardware(name))
    except CatalogError:
        return "", ""
    power = any(f.startswith("power.") for f in fields)
    return ("~" if any(not f.startswith("power.") for f in fields) else ""), ("~" if power else "")


def _est(cell: str, mark: str) -> str:
    return cell if cell == "-" else cell + mark


def comparison_table(report: Report) -> Table:
    marks = {r.profile: _estimate_marks(r.profile) for r in report.results}
    t = Table(
        title=f"profiles: one beat (budget {fmt_s(PER_BEAT_BUDGET_S)}), one decision + swap (budget {fmt_s(DECISION_BUDGET_S)}), "
        f"{report.settings.heart_rate_bpm:g} bpm, telemetry over {report.settings.network}",
        caption="~ rests on estimated profile numbers (`kasmina-edge profiles show NAME --json`: each number's source)"
        if any(a or b for a, b in marks.values())
        else None,
    )
    for col in (
        "profile",
        "kind",
        "per beat",
        "5 ms",
        "decision+swap",
        "50 ms",
        "energy/beat",
        "avg power",
        "battery life",
        "notes / limits",
    ):
        t.add_column(col, justify="left" if col in ("profile", "kind", "notes / limits") else "right")
    for r in report.results:
        if not r.compatible:
            t.add_row(
                r.profile,
                r.kind,
                "-",
                "-",
                "-",
                "-",
                "-",
                "-",
                "-",
                "[red]" + "; ".join(f"{x.limit}: {x.detail}" for x in r.limits) + "[/]",
            )
            continue
        e = r.energy
        life = e.battery_life_days if e else None
        timing, power = marks[r.profile]
        t.add_row(
            r.profile,
            r.kind,
            _est(fmt_s(r.per_beat_s), timing),
            _mark(r.per_beat_ok),
            _est(fmt_s(r.decision.total_s if r.decision else None), timing),
            _mark(r.decision_ok),
            _est(fmt_j(e.inference_j + e.decision_j if e else None), power),
            f"{e.avg_power_w * 1e3:.2f} mW{power}" if e else "-",
            f"{life:.1f} d{power}" if life is not None else (e.battery_source if e else "-"),
            "; ".join(r.notes[:2]),
        )
    return t


def artifact_table(result: ProfileResult) -> Table:
    t = Table(title=f"{result.profile}: per artifact")
    for col in (
        "artifact",
        "total",
        "compute",
        "memory",
        "overhead",
        "link",
        "bound",
        "weights in",
        "ops/byte",
        "partition",
    ):
        t.add_column(
            col, justify="left" if col in ("artifact", "bound", "weights in", "partition") else "right"
        )
    for name, lat in result.latencies.items():
        part = lat.partition
        p = "-" if not part else f"{part['mapped_ops']} TPU / {part['cpu_ops']} CPU"
        t.add_row(
            name,
            fmt_s(lat.total_s),
            fmt_s(lat.compute_s),
            fmt_s(lat.memory_s),
            fmt_s(lat.overhead_s),
            fmt_s(lat.link_s),
            lat.bound,
            lat.weights_in,
            f"{lat.intensity:.1f}",
            p,
        )
    if result.base_s is not None:
        t.add_row("[bold]base chain[/]", fmt_s(result.base_s), "", "", "", "", "", "", "", "")
    if result.per_beat_s is not None:
        t.add_row(
            "[bold]per beat (+ heaviest kernel per site)[/]",
            fmt_s(result.per_beat_s),
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
        )
    if result.whole_s is not None:
        t.add_row("[bold]whole model in one piece[/]", fmt_s(result.whole_s), "", "", "", "", "", "", "", "")
    return t


def ops_table(result: ProfileResult, artifact: str, top: int = 12) -> Table:
    lat = result.latencies[artifact]
    t = Table(title=f"{result.profile}: {artifact}, slowest ops")
    for col in ("#", "op", "runs on", "time", "compute", "memory", "bound"):
        t.add_column(col, justify="right" if col in ("#", "time", "compute", "memory") else "left")
    for o in sorted(lat.ops, key=lambda o: -o.total_s)[:top]:
        t.add_row(
            str(o.index), o.op, o.runs_on, fmt_s(o.total_s), fmt_s(o.compute_s), fmt_s(o.memory_s), o.bound
        )
    return t


def decision_table(report: Report) -> Table:
    t = Table(title="decision budget: controller features + rules (+ policy), G0 reference check, swap")
    for col in ("profile", "runs on", "decision", "G0 check", "swap", "total", "50 ms"):
        t.add_column(col, justify="left" if col in ("profile", "runs on") else "right")
    for r in report.compatible():
        d = r.decision
        if d is None:
            continue
        t.add_row(
            r.profile,
            d.runs_on,
            fmt_s(d.decision_s),
            fmt_s(d.reference_check_s),
            fmt_s(d.swap_s),
            fmt_s(d.total_s),
            _mark(r.decision_ok),
        )
    return t


def measured_table(report: Report) -> Table:
    t = Table(
        title="measured here (one core, warm); beside it the host profile's estimate on the same runtime"
    )
    for col in ("artifact", "backend", "runs", "p50", "p90", "p99", "p99/p50", "estimate", "est/meas"):
        t.add_column(col, justify="left" if col in ("artifact", "backend") else "right")
    cal = {(c["artifact"], c["backend"]): c for c in report.calibration()}
    for m in report.measurements:
        c = cal.get((m.artifact, m.backend))
        t.add_row(
            m.artifact,
            m.backend,
            str(m.runs),
            fmt_s(m.p50_s),
            fmt_s(m.p90_s),
            fmt_s(m.p99_s),
            f"{m.spread:.2f}",
            fmt_s(c["estimate_s"]) if c else "-",
            f"{c['ratio']:.2f}" if c else "-",
        )
    return t


def arena_table(report: Report) -> Table:
    t = Table(title="TFLite Micro arena: estimate vs the interpreter's report")
    for col in ("artifact", "estimated", "measured", "est/meas"):
        t.add_column(col, justify="left" if col == "artifact" else "right")
    for a in report.arenas:
        t.add_row(
            a.name,
            f"{a.estimated_bytes:,} B",
            f"{a.measured_bytes:,} B" if a.measured_bytes else "-",
            f"{a.ratio:.3f}" if a.ratio else "-",
        )
    return t


def render(report: Report, console: Console, detail: str | None = None) -> None:
    """The subject, the comparison, the decision budget; per-artifact and per-op detail for ``detail``
    (a profile name; default: the only compatible profile when there is one)."""
    console.print(subject_table(report))
    console.print(comparison_table(report))
    console.print(decision_table(report))
    compatible = report.compatible()
    chosen = detail or (compatible[0].profile if len(compatible) == 1 else None)
    if chosen is not None:
        r = report.result(chosen)
        if r.compatible:
            console.print(artifact_table(r))
            heaviest = max(r.latencies, key=lambda n: r.latencies[n].total_s)
            console.print(ops_table(r, heaviest))
    if report.measurements:
        console.print(measured_table(report))
    for note in report.measure_notes:
        console.print(f"[yellow]not measured:[/] {note}")
    if report.arenas:
        console.print(arena_table(report))
    console.print(f"profiled {len(report.results)} profiles in {report.elapsed_s:.2f} s")
