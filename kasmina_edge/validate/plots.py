"""The report's figures (matplotlib, Agg), each returned as a PNG's base64 text to inline in the HTML."""

from __future__ import annotations

import base64
import io
from typing import Any

CLASSES = ("N", "S", "V", "F", "Q")
STAGE_GROUPS = {
    "germinated / trial": ("GERMINATED", "TRAINING"),
    "blending / shadowing": ("BLENDING", "SHADOWING"),
    "live (probationary, fossilized)": ("PROBATIONARY", "FOSSILIZED"),
    "culled / embargoed": ("CULLED", "EMBARGOED"),
    "reset / dormant": ("RESETTING", "DORMANT", "TERMINATED"),
}
GROUP_COLOURS = {"germinated / trial": "tab:grey", "blending / shadowing": "tab:cyan",
                 "live (probationary, fossilized)": "tab:green", "culled / embargoed": "tab:red",
                 "reset / dormant": "tab:brown", "other moves": "black"}


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=96)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _plt() -> Any:
    from kasmina_edge.contracts.optional import require

    mpl = require("matplotlib", "drawing the validation report's plots")
    mpl.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def confusion(matrix: list[list[int]], title: str) -> str:
    import numpy as np

    plt = _plt()
    counts = np.asarray(matrix, dtype=np.float64)
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(counts.shape[1]), [*CLASSES, "missed"][: counts.shape[1]])
    ax.set_yticks(range(counts.shape[0]), [*CLASSES, "extra"][: counts.shape[0]])
    ax.set_xlabel("prediction")
    ax.set_ylabel("reference")
    for i in range(counts.shape[0]):
        for j in range(counts.shape[1]):
            if counts[i, j]:
                ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", fontsize=7,
                        color="white" if share[i, j] > 0.5 else "black")
    ax.set_title(title, fontsize=9)
    return _png(fig)


def per_record(rows: list[dict[str, Any]]) -> str:
    import numpy as np

    plt = _plt()
    names = [r["name"] for r in rows]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(4.0, 0.6 * len(rows) + 2), 3.0))
    for i, (key, label) in enumerate((("macro_f1", "macro-F1"), ("N", "N Se"), ("V", "V Se"))):
        vals = [r[key] if key == "macro_f1" else r[key]["se"] for r in rows]
        ax.bar(x + (i - 1) * 0.27, [100 * v if v == v else 0 for v in vals], width=0.27, label=label)
    ax.set_xticks(x, names, rotation=45 if len(rows) > 6 else 0, fontsize=8)
    ax.set_ylim(0, 100)
    ax.set_ylabel("%")
    ax.legend(fontsize=7, ncols=3)
    ax.set_title("per record (device as deployed)", fontsize=9)
    return _png(fig)


def latency(host_s: list[float], device_s: list[float], budget_s: float) -> str:
    import numpy as np

    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.0, 3.0))
    values = [v for v in (*host_s, *device_s, budget_s) if v > 0]
    bins = np.logspace(np.log10(min(values) * 0.8), np.log10(max(values) * 1.25), 50) * 1e3  # a few slow first
    if host_s:  # invocations would squash a linear axis
        ax.hist([v * 1e3 for v in host_s if v > 0], bins=bins, alpha=0.6, label="this host (measured)")
    if device_s:
        ax.hist([v * 1e3 for v in device_s if v > 0], bins=bins, alpha=0.6, label="device (emulated estimate)")
    ax.axvline(budget_s * 1e3, color="red", linestyle="--", label=f"budget {budget_s * 1e3:g} ms")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("ms per beat")
    ax.set_ylabel("beats")
    ax.legend(fontsize=7)
    ax.set_title("latency per beat", fontsize=9)
    return _png(fig)


def timeline(transitions: list[dict[str, Any]], faults: list[dict[str, Any]]) -> str:
    """Lanes: each kernel's lifecycle moves (first record), the link's scripted faults as spans with every
    telemetry record (delivered or lost), the NaN kernel's injection and rollback."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.0, 3.2))
    lanes: dict[str, int] = {}
    first = transitions[0]["record"] if transitions else None
    for tr in [t for t in transitions if t["record"] == first][:300]:
        lane = lanes.setdefault(f"kernel {tr['kernel']}"[:40], len(lanes))
        group = next((g for g, stages in STAGE_GROUPS.items() if tr["to"] in stages), "other moves")
        ax.scatter(tr["t"], lane, s=16, color=GROUP_COLOURS[group], label=group, zorder=3)
    for f in faults:
        if f["fault"] == "link":
            lane = lanes.setdefault("link faults", len(lanes))
            colours = {"LossBurst": "tab:orange", "LatencySpike": "tab:purple", "GatewayRestart": "tab:red", "BrokerDown": "tab:brown",
                       "Outage": "black"}
            for e in f["detail"].get("events", []):
                ax.barh(lane, max(e["duration_s"], 0.5), left=e["start_s"], height=0.5, alpha=0.6,
                        color=colours.get(e["kind"], "grey"), label=e["kind"])
            lane = lanes.setdefault("telemetry records", len(lanes))
            for t, what in f.get("timeline", []):
                ax.scatter(t, lane, s=10, marker="|", color="tab:green" if what == "delivered" else "tab:red")
        elif f["fault"] == "nan_kernel" and f.get("timeline"):
            lane = lanes.setdefault("NaN kernel", len(lanes))
            for t, what in f["timeline"]:
                ax.scatter(t, lane, s=24, marker="x", color="red" if what == "nan" else "green")
                ax.annotate(what, (t, lane), fontsize=6, xytext=(2, 4), textcoords="offset points")
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        uniq = dict(zip(labels, handles, strict=False))
        ax.legend(uniq.values(), uniq.keys(), fontsize=6, loc="upper right")
    ax.set_yticks(list(lanes.values()), list(lanes), fontsize=6)
    ax.set_ylim(-0.8, max(len(lanes), 1) - 0.2)
    ax.set_xlabel("seconds of signal")
    ax.set_title("lifecycle timeline: kernel moves, injected faults, telemetry delivered (green) or lost (red)",
                 fontsize=8)
    if not lanes:
        ax.text(0.5, 0.5, "no kernel moved, no fault injected", ha="center", transform=ax.transAxes)
    return _png(fig)
