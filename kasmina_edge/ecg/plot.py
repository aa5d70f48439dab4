"""ECG strip plots (matplotlib, an optional extra), written atomically.

One panel per lead on ECG-paper-like axes; every reference beat is marked with its AAMI
class letter (detected beats, when given, with a tick); artifact-mask spans are shaded,
one colour per artifact kind; rhythm and condition spans are named above the strip.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.contracts.optional import require
from kasmina_edge.ecg.records import crop
from kasmina_edge.ecg.types import AAMI_CLASSES, ARTIFACT_BITS, Record

FORMATS = ("png", "svg", "pdf")
CLASS_COLOURS = {"N": "#2b7a0b", "S": "#1f4e9c", "V": "#c0392b", "F": "#8e44ad", "Q": "#7f8c8d"}
ARTIFACT_COLOURS = {
    "baseline_wander": "#f5b041", "emg": "#e74c3c", "powerline": "#5dade2", "electrode_motion": "#af7ac5",
    "lead_off": "#566573", "saturation": "#f1c40f",
}


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    m = np.concatenate([[False], mask.astype(bool), [False]])
    edges = np.flatnonzero(np.diff(m.astype(np.int8)))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def plot_strip(
    record: Record,
    out: str | Path,
    start_s: float = 0.0,
    seconds: float = 10.0,
    leads: Sequence[int] | None = None,
    detected: np.ndarray | None = None,
    title: str | None = None,
    time_offset_s: float = 0.0,
) -> Path:
    """Draw [start_s, start_s + seconds) of ``record`` to ``out`` (.png, .svg or .pdf).

    ``time_offset_s`` is added to the time axis (for a record already cut out of a longer one).
    """
    out = Path(out)
    fmt = out.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise KasminaError(f"plot output {out} must end in {', '.join('.' + f for f in FORMATS)}")
    matplotlib = require("matplotlib", "drawing ECG strips")
    matplotlib.use("Agg")
    plt = require("matplotlib.pyplot", "drawing ECG strips")
    part = crop(record, start_s, seconds)
    lead_idx = list(range(part.signal.shape[1])) if leads is None else list(leads)
    for li in lead_idx:
        if not 0 <= li < part.signal.shape[1]:
            raise KasminaError(f"lead {li} out of range ({part.signal.shape[1]} leads)")
    offset = int(round(start_s * record.fs))
    t = (np.arange(part.n_samples) + offset) / part.fs + time_offset_s
    fig, axes = plt.subplots(len(lead_idx), 1, figsize=(max(8.0, 1.6 * part.seconds), 2.4 * len(lead_idx)),
                             sharex=True, squeeze=False)
    shaded: set[str] = set()
    for row, li in enumerate(lead_idx):
        ax = axes[row][0]
        x = part.signal[:, li]
        ax.plot(t, x, color="black", linewidth=0.8)
        ax.set_ylabel(f"{part.lead_names[li]} (mV)" if li < len(part.lead_names) else f"lead {li}")
        ax.grid(True, which="major", color="#f1948a", linewidth=0.6, alpha=0.6)
        ax.minorticks_on()
        ax.grid(True, which="minor", color="#fadbd8", linewidth=0.3, alpha=0.6)
        lo, hi = (float(x.min()), float(x.max())) if x.size else (-1.0, 1.0)
        pad = 0.15 * max(hi - lo, 0.5)
        ax.set_ylim(lo - pad, hi + 2 * pad)
        if part.artifact_mask is not None:
            for name, bit in ARTIFACT_BITS.items():
                for a, b in _runs((part.artifact_mask & bit) != 0):
                    ax.axvspan(t[a], t[min(b, len(t) - 1)], color=ARTIFACT_COLOURS[name], alpha=0.25,
                               label=name if name not in shaded else None, linewidth=0)
                    shaded.add(name)
        if part.beats is not None:
            for s, c in zip(part.beats.samples, part.beats.classes, strict=True):
                letter = AAMI_CLASSES[int(c)]
                ax.text(t[s], hi + 0.9 * pad, letter, ha="center", va="center", fontsize=9, fontweight="bold",
                        color=CLASS_COLOURS[letter])
        if detected is not None:
            d = np.asarray(detected, dtype=np.int64) - offset
            d = d[(d >= 0) & (d < part.n_samples)]
            ax.plot(t[d], x[d], "v", color="#d35400", markersize=4, label="detected" if row == 0 else None)
    t0 = start_s + time_offset_s
    spans = [f"{iv.label} {iv.start / part.fs + t0:.1f}-{iv.end / part.fs + t0:.1f}s"
             for iv in (*part.rhythms, *part.conditions) if iv.label != "N" or len(part.rhythms) > 1]
    head = title or part.name
    axes[0][0].set_title(head + (" | " + ", ".join(spans[:6]) if spans else ""), fontsize=9, loc="left")
    axes[-1][0].set_xlabel("time (s)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        axes[0][0].legend(loc="upper right", fontsize=7, ncol=min(len(handles), 4))
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        fig.savefig(tmp, format=fmt, dpi=110)
        os.replace(tmp, out)
    finally:
        plt.close(fig)
        if tmp.exists():
            tmp.unlink()
    return out
