"""The report's figures (matplotlib, Agg), each returned as a PNG's base64 text to inline in the HTML."""

from __future__ import annotations

import base64
import io
from typing import Any

CLASSES = ("N", "S", "V", "F", "Q")


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
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.0, 3.0))
    if host_s:
        ax.hist([v * 1e3 for v in host_s], bins=40, alpha=0.6, label="this host (measured)")
    if device_s:
        ax.hist([v * 1e3 for v in device_s], bins=40, alpha=0.6, label="device (emulated)")
    ax.axvline(budget_s * 1e3, color="red", linestyle="--", label=f"budget {budget_s * 1e3:g} ms")
    ax.set_xlabel("ms per beat")
    ax.set_ylabel("beats")
    ax.legend(fontsize=7)
    ax.set_title("latency per beat", fontsize=9)
    return _png(fig)


def timeline(transitions: list[dict[str, Any]], faults: list[dict[str, Any]]) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 2.8))
    lanes: dict[str, int] = {}
    for tr in transitions[:400]:
        lane = lanes.setdefault(f"{tr['record']}: {tr['kernel']}", len(lanes))
        ax.scatter(tr["t"], lane, s=14, marker="o")
        ax.annotate(tr["to"][:4], (tr["t"], lane), fontsize=5, xytext=(2, 3), textcoords="offset points")
    for f in faults:
        for t, what in f.get("timeline", [])[:1] if f["fault"] == "link" else f.get("timeline", []):
            lane = lanes.setdefault(f"fault: {f['fault']}", len(lanes))
            ax.scatter(t, lane, s=20, marker="x", color="red" if not f["passed"] else "green")
            ax.annotate(what, (t, lane), fontsize=5, xytext=(2, 3), textcoords="offset points")
    ax.set_yticks(list(lanes.values()), list(lanes), fontsize=6)
    ax.set_xlabel("seconds of signal")
    ax.set_title("lifecycle timeline: kernel moves and injected faults", fontsize=9)
    if not lanes:
        ax.text(0.5, 0.5, "no kernel moved, no fault injected", ha="center", transform=ax.transAxes)
    return _png(fig)
