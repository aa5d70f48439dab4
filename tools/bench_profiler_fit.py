"""Section 5 of tools/bench_profiler.py: each MCU submission's efficiency fitted to MLPerf Tiny's published
latencies, and the fit judged on models it did not see (leave one model out), in one run.

Per submission (board and runtime, re-clocked profile as in section 2): the efficiency at which the median
estimate / published over its four models is 1 (``kasmina_edge.profiler.calibrate``), the ratios before and
after, and for each model the ratio when the efficiency is fitted on the other three. The fitted values are
what ``profiles/hardware/stm32f446.toml`` (TFLite Micro, same Cortex-M4) carries, and ``stm32h743.toml`` by
transfer (the H7A3ZI-Q's X-CUBE-AI fit times TFLite Micro's / X-CUBE-AI's fit on the L4R5ZI); the table shows
the catalog's value beside the fit so a drift is seen.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.table import Table

from kasmina_edge.core.catalog import hardware
from kasmina_edge.core.profiles import HardwareProfile
from kasmina_edge.profiler.calibrate import Published, calibrate, transfer
from kasmina_edge.profiler.graph import profile_tflite


def mlperf_fit(models: dict[str, bytes], published: list[dict[str, Any]],
               reclocked: Callable[[HardwareProfile, float, str], HardwareProfile]) -> dict[str, Any]:
    graphs = {t: profile_tflite(d, f"mlperf-{t}") for t, d in models.items()}
    groups: dict[str, list[Published]] = {}
    bases: dict[str, str] = {}
    for pub in published:
        name = f"{pub['board']} / {pub['runtime']}"
        prof = reclocked(hardware(pub["base"]), pub["clock_hz"], pub["board"])
        groups.setdefault(name, []).append(Published(pub["task"], graphs[pub["task"]], prof, 1.0 / pub["inf_per_s"]))
        bases[name] = pub["base"]
    fits = {name: calibrate(name, points) for name, points in groups.items()}
    rows = []
    for name, c in fits.items():
        rows.append({"submission": name, "profile": bases[name], "catalog_efficiency": hardware(bases[name]).efficiency,
                     **c.to_dict()})
    tflm = next((c for n, c in fits.items() if "L4R5" in n and "TFLite Micro" in n), None)
    xcube = next((c for n, c in fits.items() if "L4R5" in n and "X-CUBE-AI" in n), None)
    h7 = next((c for n, c in fits.items() if "H7A3" in n), None)
    derived: dict[str, float] = {}
    if tflm is not None:
        derived["stm32f446"] = tflm.efficiency
    if tflm is not None and xcube is not None and h7 is not None:
        derived["stm32h743"] = transfer(h7.efficiency, tflm.efficiency / xcube.efficiency)
    return {"rows": rows, "profile_efficiency": derived,
            "all_held_out_within": all(r["within_0.67_1.5"] for r in rows)}


def show_fit(fit: dict[str, Any], console: Console) -> None:
    t = Table(title="5. efficiency fitted per submission to MLPerf Tiny (median est/pub = 1); leave-one-model-out check")
    for col in ("submission", "fitted eff.", "catalog eff.", "est/pub before", "after (fit on all)",
                "held out (fit on the other 3)", "held-out median"):
        t.add_column(col, justify="left" if col == "submission" else "right")
    for r in fit["rows"]:
        t.add_row(
            r["submission"], f"{r['efficiency']:.3f}", f"{r['catalog_efficiency']:.3f}",
            " ".join(f"{k} {v:.2f}" for k, v in r["before"].items()),
            " ".join(f"{k} {v:.2f}" for k, v in r["after"].items()),
            " ".join(f"{h['model']} {h['ratio']:.2f}" for h in r["held_out"]),
            f"{r['held_out_median']:.2f}",
        )
    console.print(t)
    for name, e in fit["profile_efficiency"].items():
        console.print(f"  {name}: efficiency from the fit {e:.3f}, catalog {hardware(name).efficiency:.3f}")
    verdict = "all within" if fit["all_held_out_within"] else "NOT all within"
    console.print(f"  held-out medians: {verdict} 0.67-1.5x")
