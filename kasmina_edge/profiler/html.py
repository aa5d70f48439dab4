"""One self-contained HTML page of a profiler report: the tables and the plots, inline SVG (no files beside it).

Plots (matplotlib, a host extra; without it the page has the tables and says so): the roofline of each
compatible profile with every artifact as a point, the per-op latency breakdown of every artifact on the
detail profile, the latency histogram of each measurement, and energy per beat / battery life per profile.
"""

from __future__ import annotations

import html
import io
from typing import Any

from kasmina_edge.profiler.render import fmt_b, fmt_j, fmt_s
from kasmina_edge.profiler.report import DECISION_BUDGET_S, PER_BEAT_BUDGET_S, ProfileResult, Report

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1400px}
table{border-collapse:collapse;margin:1em 0;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f0f0f0} td.l,th.l{text-align:left}
.pass{color:#080;font-weight:bold}.fail{color:#c00;font-weight:bold}.limit{color:#c00}
h2{margin-top:1.6em;border-bottom:1px solid #ddd} .note{color:#666;font-size:13px}
figure{margin:1em 0} svg{max-width:100%;height:auto}
"""


def _e(x: Any) -> str:
    return html.escape(str(x))


def _table(headers: list[str], rows: list[list[str]], left: int = 1) -> str:
    head = "".join(f'<th class="{"l" if i < left else ""}">{_e(h)}</th>' for i, h in enumerate(headers))
    body = "".join(
        "<tr>" + "".join(f'<td class="{"l" if i < left else ""}">{c}</td>' for i, c in enumerate(r)) + "</tr>"
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _mark(ok: bool | None) -> str:
    return "-" if ok is None else '<span class="pass">pass</span>' if ok else '<span class="fail">fail</span>'


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    text = buf.getvalue()
    return text[text.find("<svg") :]


def _roofline(report: Report) -> str:
    import matplotlib.pyplot as plt
    import numpy as np

    from kasmina_edge.core.catalog import hardware
    from kasmina_edge.profiler.latency import roofline_ceiling

    fig, ax = plt.subplots(figsize=(9, 5.5))
    xs = np.logspace(-2, 3, 200)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, r in enumerate(report.compatible()):
        c = colors[k % len(colors)]
        p = hardware(r.profile)
        ax.loglog(
            xs,
            roofline_ceiling(p, list(xs), report.subject.artifacts[0].graph.dtype),
            color=c,
            lw=1,
            label=r.profile,
        )
        pts = list(r.latencies.values())
        ax.scatter([q.intensity for q in pts], [q.achieved_ops_per_s for q in pts], color=c, s=18, zorder=3)
    ax.set_xlabel("arithmetic intensity (ops per byte moved)")
    ax.set_ylabel("ops/s (line: attainable; points: artifacts, estimated)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    ax.set_title("roofline per profile, each artifact a point")
    return _svg(fig)


def _breakdown(result: ProfileResult) -> str:
    import matplotlib.pyplot as plt

    names = list(result.latencies)
    kinds = sorted({o.op for lat in result.latencies.values() for o in lat.ops})
    cmap = plt.get_cmap("tab20")
    color = {k: cmap(i % 20) for i, k in enumerate(kinds)}
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(names) + 1.5))
    for y, n in enumerate(names):
        lat = result.latencies[n]
        left = 0.0
        for part, width, c in (("overhead", lat.overhead_s + lat.link_s, "#bbbbbb"),):
            ax.barh(y, width * 1e6, left=left, color=c, label=part if y == 0 else None)
            left += width * 1e6
        for o in lat.ops:
            ax.barh(y, o.total_s * 1e6, left=left, color=color[o.op])
            left += o.total_s * 1e6
    for k in kinds:
        ax.barh(0, 0, color=color[k], label=k)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("estimated time per invoke (us)")
    ax.set_title(f"{result.profile}: per-op latency breakdown (grey: dispatch + host link)")
    ax.legend(fontsize=7, ncol=3, loc="lower right")
    return _svg(fig)


def _histograms(report: Report) -> str:
    import matplotlib.pyplot as plt

    ms = [m for m in report.measurements if m.samples_s]
    cols = 3
    rows = (len(ms) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(10, 2.4 * rows), squeeze=False)
    for ax, m in zip(axes.flat, ms, strict=False):
        us = [s * 1e6 for s in m.samples_s]
        ax.hist([u for u in us if u <= m.p99_s * 1e6], bins=40, color="#4477aa")
        for v, ls in ((m.p50_s, "-"), (m.p99_s, "--")):
            ax.axvline(v * 1e6, color="k", ls=ls, lw=0.8)
        ax.set_title(f"{m.artifact} / {m.backend}", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(ms) :]:
        ax.axis("off")
    fig.suptitle(
        "measured latency per invoke (us; solid p50, dashed p99; the 1 % above p99 left out)", fontsize=9
    )
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return _svg(fig)


def _energy(report: Report) -> str:
    import matplotlib.pyplot as plt

    rs = [r for r in report.compatible() if r.energy]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    names = [r.profile for r in rs]
    a1.bar(
        names, [(r.energy.inference_j + r.energy.decision_j) * 1e3 for r in rs if r.energy], color="#cc6677"
    )
    a1.set_yscale("log")
    a1.set_ylabel("mJ per beat (inference + decision)")
    a1.tick_params(axis="x", rotation=45, labelsize=8)
    life = [(r.profile, r.energy.battery_life_days) for r in rs if r.energy and r.energy.battery_life_days]
    a2.bar([n for n, _ in life], [d for _, d in life], color="#117733")
    a2.set_ylabel(f"battery life (days) at {report.settings.heart_rate_bpm:g} bpm")
    a2.tick_params(axis="x", rotation=45, labelsize=8)
    a2.set_title(f"telemetry over {report.settings.network}", fontsize=9)
    fig.tight_layout()
    return _svg(fig)


def _subject_rows(report: Report) -> list[list[str]]:
    return [
        [
            _e(a.name),
            _e(a.facts.kind),
            _e(a.facts.format),
            str(a.facts.bits),
            fmt_b(a.facts.bytes),
            f"{a.graph.macs:,}",
            fmt_b(a.graph.param_bytes),
            fmt_b(a.graph.plan.peak_bytes),
            fmt_b(a.arena.total_bytes) if a.arena else "-",
        ]
        for a in report.subject.artifacts
    ]


def _comparison_rows(report: Report) -> list[list[str]]:
    rows = []
    for r in report.results:
        if not r.compatible:
            lim = "; ".join(f"{x.limit}: {x.detail}" for x in r.limits)
            rows.append([_e(r.profile), _e(r.kind)] + ["-"] * 7 + [f'<span class="limit">{_e(lim)}</span>'])
            continue
        e = r.energy
        life = e.battery_life_days if e else None
        rows.append(
            [
                _e(r.profile),
                _e(r.kind),
                fmt_s(r.per_beat_s),
                _mark(r.per_beat_ok),
                fmt_s(r.decision.total_s if r.decision else None),
                _mark(r.decision_ok),
                fmt_j(e.inference_j + e.decision_j if e else None),
                f"{e.avg_power_w * 1e3:.2f} mW" if e else "-",
                f"{life:.1f} d" if life is not None else _e(e.battery_source if e else "-"),
                _e("; ".join(r.notes)),
            ]
        )
    return rows


def _artifact_rows(r: ProfileResult) -> list[list[str]]:
    rows = []
    for n, lat in r.latencies.items():
        part = lat.partition
        rows.append(
            [
                _e(n),
                fmt_s(lat.total_s),
                fmt_s(lat.compute_s),
                fmt_s(lat.memory_s),
                fmt_s(lat.overhead_s),
                fmt_s(lat.link_s),
                _e(lat.bound),
                _e(lat.weights_in),
                "-" if not part else f"{part['mapped_ops']} TPU / {part['cpu_ops']} CPU",
            ]
        )
    return rows


def write_html(report: Report, detail: str | None = None) -> str:
    """The page as one string."""
    s = report.subject
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>kasmina-edge profile: {_e(s.name)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Profile of {_e(s.kind)} <code>{_e(s.name)}</code></h1>",
        f"<p class='note'>{_e(s.path)}"
        + (f" &middot; target {_e(s.target)}, built for {_e(s.built_for)}" if s.target else "")
        + f" &middot; budgets: one beat {fmt_s(PER_BEAT_BUDGET_S)}, one decision + swap {fmt_s(DECISION_BUDGET_S)}"
        f" &middot; {report.settings.heart_rate_bpm:g} bpm, telemetry over {_e(report.settings.network)}</p>",
        "<h2>Artifacts</h2>",
        _table(
            [
                "artifact",
                "kind",
                "format",
                "bits",
                "bytes",
                "MACs",
                "params",
                "peak activations",
                "TFLM arena",
            ],
            _subject_rows(report),
            3,
        ),
        "<h2>Profiles</h2>",
        _table(
            [
                "profile",
                "kind",
                "per beat",
                "5 ms",
                "decision + swap",
                "50 ms",
                "energy/beat",
                "avg power",
                "battery",
                "notes / limits",
            ],
            _comparison_rows(report),
            2,
        ),
    ]
    try:
        from kasmina_edge.contracts.optional import require

        require("matplotlib", "the report's plots")
        import matplotlib

        matplotlib.use("Agg")
        plots = True
    except Exception:  # noqa: BLE001 - MissingExtraError: the page keeps its tables
        plots = False
        parts.append(
            "<p class='note'>matplotlib is not installed: no plots (pip install 'kasmina-edge[host]').</p>"
        )
    if plots and report.compatible():
        parts += ["<h2>Roofline</h2>", f"<figure>{_roofline(report)}</figure>"]
    compatible = report.compatible()
    shown = [report.result(detail)] if detail and report.result(detail).compatible else compatible[:1]
    for r in shown:
        parts += [
            f"<h2>{_e(r.profile)}: per artifact</h2>",
            _table(
                [
                    "artifact",
                    "total",
                    "compute",
                    "memory",
                    "overhead",
                    "link",
                    "bound",
                    "weights in",
                    "partition",
                ],
                _artifact_rows(r),
            ),
        ]
        if plots:
            parts.append(f"<figure>{_breakdown(r)}</figure>")
    if report.measurements:
        rows = [
            [
                _e(m.artifact),
                _e(m.backend),
                str(m.runs),
                fmt_s(m.p50_s),
                fmt_s(m.p90_s),
                fmt_s(m.p99_s),
                f"{m.spread:.2f}",
            ]
            for m in report.measurements
        ]
        parts += [
            "<h2>Measured here</h2>",
            _table(["artifact", "backend", "runs", "p50", "p90", "p99", "p99/p50"], rows, 2),
        ]
        if plots:
            parts.append(f"<figure>{_histograms(report)}</figure>")
    if report.arenas:
        rows = [
            [
                _e(a.name),
                f"{a.estimated_bytes:,} B",
                f"{a.measured_bytes:,} B" if a.measured_bytes else "-",
                f"{a.ratio:.3f}" if a.ratio else "-",
            ]
            for a in report.arenas
        ]
        parts += [
            "<h2>TFLite Micro arena</h2>",
            _table(["artifact", "estimated", "measured", "est/meas"], rows),
        ]
    if plots and any(r.energy for r in compatible):
        parts += ["<h2>Energy and battery</h2>", f"<figure>{_energy(report)}</figure>"]
    parts.append(f"<p class='note'>profiled in {report.elapsed_s:.2f} s</p></body></html>")
    return "".join(parts)
