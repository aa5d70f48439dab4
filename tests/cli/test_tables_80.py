"""Every command's table reads at 80 columns: no line wider, no figure cut to '98.…' (issue 17, item 4)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from rich.console import Console

WIDTH = 80


def _render(*renderables: object) -> str:
    con = Console(width=WIDTH, record=True, file=open("/dev/null", "w"), color_system=None)  # noqa: SIM115
    for r in renderables:
        con.print(r)
    return con.export_text()


def _assert_reads_at_80(text: str) -> None:
    lines = text.splitlines()
    assert lines, "nothing rendered"
    assert max(len(ln) for ln in lines) <= WIDTH, "\n".join(ln for ln in lines if len(ln) > WIDTH)
    assert "…" not in text, text


def _evaluation(name: str, seed: int):  # type: ignore[no-untyped-def]
    from kasmina_edge.ecg.evaluate import evaluate_beats

    rng = np.random.default_rng(seed)
    ref = np.cumsum(rng.integers(250, 330, size=2500))
    ref_c = rng.choice(list("NNNNNNNNSVF"), size=ref.size)
    keep = rng.random(ref.size) > 0.01  # a few missed beats
    pred_c = np.where(rng.random(ref.size) > 0.1, ref_c, "N")
    return evaluate_beats(ref, ref_c, ref[keep] + 3, pred_c[keep], 360.0, name=name)


def _perfect(name: str):  # type: ignore[no-untyped-def]
    from kasmina_edge.ecg.evaluate import evaluate_beats

    ref = np.arange(1, 4001) * 300
    classes = np.array(list("NSVF") * 1000)
    return evaluate_beats(ref, classes, ref, classes, 360.0, name=name)


def test_evaluate_tables() -> None:
    from kasmina_edge.cli.evaluate import confusion_table, summary_table
    from kasmina_edge.ecg.evaluate import gross

    evs = [_evaluation(n, i) for i, n in enumerate(("100", "noisy-walk-s0", "arrhythmia-mix-s12"))]
    evs.append(_perfect("new-patient-s3"))  # every figure 100.0: the widest cells
    shown = [*evs, gross(evs)]
    text = _render(summary_table(shown), confusion_table(shown[-1]))
    _assert_reads_at_80(text)
    for ev in shown:  # every figure is there, whole
        assert f"{100 * ev.macro_f1():.1f}" in text
        assert f"F1 {100 * ev.f1('N'):.1f}" in text


def _device(i: int) -> dict[str, object]:
    return {"link": "lorawan-eu868-dr0", "status": "online", "records": 12_345 + i, "missing": 3, "dropped_by_device": 1,
            "duplicates": 2, "bad_frames": 0, "uplink_loss": 0.0123, "airtime_last_hour_s": 35.9,
            "duty_cycle_left": 0.42, "link_latency_median_s": 1.234, "battery_pct": 97.5,
            "stages": {"PROBATIONARY": 1, "DORMANT": 2}}  # fmt: skip


@pytest.mark.parametrize("devices", [1, 3, 12])
def test_monitor_table(devices: int) -> None:
    from kasmina_edge.cli.net import _monitor_table

    summary = {"messages": 1234, "records": 5678, "duplicates": 9, "bad_messages": 0,
               "devices": {f"patch-{i:02d}": _device(i) for i in range(devices)}}  # fmt: skip
    text = _render(_monitor_table(summary, WIDTH))
    _assert_reads_at_80(text)
    assert "patch-00" in text and "12,345" in text and "1.2 %" in text and "PROBATIONARY:1" in text


def test_run_summary_table() -> None:
    from kasmina_edge.cli.device import _print_summary

    s = SimpleNamespace(
        device="emu://patch-01", bundle_id="base-edgetpu-0123456789ab", slot="a", profile="nrf52840", interrupted=False,
        status={"beats": 2273, "classes": {"N": 2239, "S": 33, "V": 1, "F": 0, "Q": 0}, "anomalies": 34,
                "decision_ms_p50": 0.12, "decision_ms_p99": 0.9, "swaps": 2, "faults": 0},
        signal_s=1505.6, wall_s=12.34, realtime_factor=122.0, host_infer_s=0.8, device_infer_s=9.1,
        battery={"charge": 0.9999871, "used_j": 0.917}, backend={"name": "litert", "runtime": "ai-edge-litert 1.2"},
        fallbacks=[], confirmed=True, records=2400,
    )  # fmt: skip
    con = Console(width=WIDTH, record=True, file=open("/dev/null", "w"), color_system=None)  # noqa: SIM115
    from pathlib import Path

    _print_summary(con, s, Path("runs/run.jsonl"))
    text = con.export_text()
    _assert_reads_at_80(text)
    assert "mAh" in text and "% left" in text  # the battery in mAh and a percentage that moves


def test_stats_table() -> None:
    from kasmina_edge.cli.ecg import _print_stats
    from kasmina_edge.ecg.sources import open_source
    from kasmina_edge.ecg.stats import compute_stats

    rec = open_source("synthetic:noisy-walk?minutes=1").record()
    assert rec is not None
    con = Console(width=WIDTH, record=True, file=open("/dev/null", "w"), color_system=None)  # noqa: SIM115
    _print_stats(con, compute_stats(rec).to_dict(), title="noisy-walk")
    _assert_reads_at_80(con.export_text())


def test_train_metrics_table() -> None:
    from kasmina_edge.cli.host import metrics_table

    m = SimpleNamespace(support=np.array([44_000, 1_800, 3_200, 380, 7]), se=np.array([0.981, 0.5, 0.9, 0.1, 0.0]),
                        ppv=np.array([0.99, 0.4, 0.8, 0.05, float("nan")]), f1=np.array([0.985, 0.44, 0.85, 0.07, 0.0]),
                        macro_f1=0.586, accuracy=0.955)  # fmt: skip
    _assert_reads_at_80(_render(metrics_table("validation (held-out records 101, 106, 108, 109)", m)))  # type: ignore[arg-type]


@pytest.mark.parametrize("argv", [["profiles", "list"], ["targets", "list"], ["targets", "show", "edgetpu"],
                                  ["profiles", "show", "lorawan-eu868-dr0"], ["ecg", "scenarios"]])
def test_catalog_commands(argv: list[str], kasmina) -> None:  # type: ignore[no-untyped-def]
    got = kasmina(*argv)
    assert got.code == 0, got.err
    _assert_reads_at_80(got.out)


def test_profile_tables(kasmina, bundles: Path) -> None:  # type: ignore[no-untyped-def]
    got = kasmina("profile", str(bundles / "edgetpu-v1.kedge"), "--keys", str(bundles / "keys"))
    assert got.code == 0, got.err
    _assert_reads_at_80(got.out)
    for name in ("stm32h743", "nrf52840", "coral-usb", "kernel_s0_emg-denoise_site0", "battery life"):
        assert name in got.out


def test_reflow_keeps_every_cell() -> None:
    from rich.table import Table

    from kasmina_edge.cli.tables import reflow

    wide = Table(title="wide")
    headers = [f"column number {i}" for i in range(12)]
    for h in headers:
        wide.add_column(h)
    rows = [[f"row{r}-value{c}" for c in range(12)] for r in range(6)]
    for r in rows:
        wide.add_row(*r)
    text = _render(reflow(wide, WIDTH))
    _assert_reads_at_80(text)
    assert all(cell in text for r in rows for cell in r) and all(h in text for h in headers)


def test_run_live_panel() -> None:
    from kasmina_edge.cli.device import _panel
    from kasmina_edge.contracts.events import DecisionTaken, KernelDecision

    kernel = "kernel_s0_emg-denoise_site0"
    status = {"beats": 2273, "signal_s": 1505.6, "anomalies": 34, "faults": 0, "infer_s": 0.8,
              "classes": {"N": 2239, "S": 33, "V": 1, "F": 0, "Q": 0},
              "slots": [{"site": 0, "kernel": kernel, "stage": "PROBATIONARY", "alpha": 1.0, "base": "edgetpu-v1"},
                        {"site": 1, "kernel": None, "stage": None, "alpha": 0.0, "base": None}]}  # fmt: skip
    runtime = SimpleNamespace(
        status=lambda: status, platform=SimpleNamespace(link_state=1),
        last_decisions=[DecisionTaken(KernelDecision("activate", "emg for 3 windows (2.1 dB)", site=0, kernel=kernel),
                                      applied=True, latency_us=61.0, window=40, t=12.5)],
    )  # fmt: skip
    text = _render(_panel(runtime, {"wall_s": 12.3, "device_s": 9.1, "battery": 0.9999871}, "emu://patch-01"))
    assert max(len(ln) for ln in text.splitlines()) <= WIDTH
    assert "…" not in text and "1,505.6 s" in text and "99.99871 %" in text


def test_morph_results_table() -> None:
    from kasmina_edge.cli.host import results_table

    tr = SimpleNamespace(condition="baseline", baseline_val=0.7123, seed_val=0.7234, clean_host=0.81, clean_seed=0.805,
                         site="site2", blueprint="bottleneck_adapter", param_count=1234, final_stage="CULLED",
                         reason="gate_G4_failed: gain 0.0011 below 0.005 (lower bound -0.01); N accuracy fine")  # fmt: skip
    kept = SimpleNamespace(**{**tr.__dict__, "final_stage": "FOSSILIZED", "condition": "emg"})
    none = SimpleNamespace(trials=[], condition="motion", base_val=0.7, decision={"reason": "no symptom in its windows"})
    result = SimpleNamespace(library=SimpleNamespace(meta={"base_params": 33461}),
                             outcomes=[SimpleNamespace(trials=[tr, kept], condition="baseline", base_val=0.7, decision={}),
                                       none])  # fmt: skip
    text = _render(results_table(result))  # type: ignore[arg-type]
    _assert_reads_at_80(text)
    assert "bottleneck_adapter" in text and "72.3" in text and "fossilized" in text
