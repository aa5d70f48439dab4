"""Stage 3, device: the bundle on its hardware profile. The profiler's estimates (latency per beat and per
decision, flash, TFLite Micro arenas on MCUs, energy per day) against the plan's budgets, the emulator's flash
check (two A/B slots, the arenas the bundle declares) and an emulated run (flash, boot, stream) whose per-beat
device time comes from the same estimates (``firmware_sim.timing``)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.validate.context import ValidationContext
from kasmina_edge.validate.result import StageResult, judged

INDEX, NAME = 3, "device"
MCU_RUNTIMES = ("tflite-micro",)


def _declared_arenas(ctx: ValidationContext) -> int | None:
    """The TFLite Micro arenas the bundle's report tells the device to allocate (what it will really take)."""
    assert ctx.bundle is not None
    if "report.json" not in ctx.bundle.files:
        return None
    try:
        arenas = (json.loads(ctx.bundle.files["report.json"]).get("memory") or {}).get("arenas") or {}
        return sum(int(v) for v in arenas.values()) if arenas else None
    except (ValueError, TypeError, AttributeError):
        return None


def _estimates(ctx: ValidationContext, failures: list[str]) -> dict[str, Any]:
    from kasmina_edge.core.catalog import list_targets
    from kasmina_edge.profiler.report import Settings, load_subject, profile_one

    p, profile = ctx.plan.device, ctx.hardware()
    subject = load_subject(ctx.bundle_path, ctx.keys)
    res = profile_one(subject, profile, Settings(), {t.name: t for t in list_targets()})
    out: dict[str, Any] = {"profile": profile.name, "runtime": profile.runtime, "compatible": res.compatible}
    if not res.compatible:
        failures.append(f"{profile.name} cannot run the bundle: {res.limits[0].detail}")
        return out
    out["per_beat_s"], out["base_s"] = res.per_beat_s, res.base_s
    if res.per_beat_s is not None and not res.per_beat_s <= p.per_beat_budget_s:
        failures.append(f"latency per beat on {profile.name}: {res.per_beat_s * 1e3:.2f} ms > budget "
                        f"{p.per_beat_budget_s * 1e3:.2f} ms")
    if res.decision is not None:
        out["decision_s"] = res.decision.total_s
        if not res.decision.total_s <= p.decision_budget_s:
            failures.append(f"latency per decision on {profile.name}: {res.decision.total_s * 1e3:.2f} ms > budget "
                            f"{p.decision_budget_s * 1e3:.2f} ms")
    mem = res.memory
    if mem is not None:
        out["flash_bytes"], out["flash_limit"] = mem.flash_bytes, mem.flash_limit
        if mem.flash_limit and not mem.flash_bytes <= p.flash_fraction_max * mem.flash_limit:
            failures.append(f"flash on {profile.name}: {mem.flash_bytes:,} B > {100 * p.flash_fraction_max:.0f} % of "
                            f"{mem.flash_limit:,} B")
        if profile.runtime in MCU_RUNTIMES:
            declared = _declared_arenas(ctx)
            need = max(v for v in (mem.sram_bytes, declared, 0) if v is not None)
            out.update(sram_estimated=mem.sram_bytes, sram_declared=declared, sram_bytes=need, sram_limit=mem.sram_limit)
            if not need <= p.sram_fraction_max * mem.sram_limit:
                which = "declared by the bundle" if declared is not None and need == declared else "estimated"
                failures.append(f"TFLite Micro arena on {profile.name}: {need:,} B ({which}) > "
                                f"{100 * p.sram_fraction_max:.0f} % of {mem.sram_limit:,} B SRAM")
    if res.energy is not None:
        e = res.energy
        out.update(energy_j_per_day=e.avg_power_w * 86400.0, avg_power_w=e.avg_power_w,
                   battery_days=e.battery_life_days, battery=e.battery_source)
        if e.battery_life_days is not None and not e.battery_life_days >= p.battery_days_min:
            failures.append(f"energy on {profile.name}: {e.avg_power_w * 86400:,.0f} J a day, {e.battery_life_days:.2f} "
                            f"days on its battery < {p.battery_days_min:g}")
    return out


def _emulated_run(ctx: ValidationContext, failures: list[str]) -> dict[str, Any]:
    from firmware_sim.device import open_device
    from firmware_sim.runner import RunOptions, run_stream
    from kasmina_edge.ecg.records import crop
    from kasmina_edge.ecg.sources import RecordSource

    p, profile = ctx.plan.device, ctx.hardware()
    dev = open_device("emu://validate-device", ctx.devices_dir / "stage3")
    try:
        flashed = dev.flash(ctx.bundle_path, ctx.keys, profile=profile.name)
        for kernels in ctx.kernel_paths:  # a patient's seeds go to the kernel store, as `flash` puts them
            dev.flash(kernels, ctx.keys)
    except KasminaError as exc:  # the emulator's own fit check: A/B slots in flash, declared arenas in SRAM
        failures.append(f"the emulated {profile.name} refuses the bundle: {exc}")
        return {}
    rec = ctx.record(ctx.records[0])
    src = RecordSource(crop(rec, 0.0, min(p.emulator_seconds, rec.seconds)), rec.name)
    ctx.logs_dir.mkdir(parents=True, exist_ok=True)
    summary = run_stream(dev, src, out=ctx.logs_dir / "device-run.jsonl", keys=ctx.keys,
                         options=RunOptions(keep_predictions=True, probation_beats=10))
    _seal(ctx, ctx.logs_dir / "device-run.jsonl")
    dev_s = np.array([b.device_us * 1e-6 for b in summary.predictions if b.device_us is not None])
    ctx.figures["device_beat_latency_s"] = dev_s.tolist()
    out = {"slot": flashed.slot, "notes": flashed.notes, "beats": len(summary.predictions),
           "signal_s": summary.signal_s, "confirmed": summary.confirmed, "battery": summary.battery,
           "device_beat_p50_s": float(np.percentile(dev_s, 50)) if dev_s.size else None,
           "device_beat_p99_s": float(np.percentile(dev_s, 99)) if dev_s.size else None}
    if dev_s.size and not float(np.percentile(dev_s, 99)) <= p.per_beat_budget_s:
        failures.append(f"emulated {profile.name}: p99 device time per beat {np.percentile(dev_s, 99) * 1e3:.2f} ms > "
                        f"budget {p.per_beat_budget_s * 1e3:.2f} ms")
    if not summary.confirmed:
        failures.append(f"emulated {profile.name}: the flashed slot was never confirmed ({len(summary.predictions)} beats)")
    return out


def _seal(ctx: ValidationContext, path: Any) -> None:
    """The device's run log holds patient data (beat classes): sealed at rest (AES-256-GCM) as a device would."""
    from kasmina_edge.validate.log_crypto import load_or_create_key, seal_file

    if path.exists():
        seal_file(path, load_or_create_key(ctx.workdir / "secure" / "logs.key"))


def run(ctx: ValidationContext) -> StageResult:
    failures: list[str] = []
    est = _estimates(ctx, failures)
    emu = _emulated_run(ctx, failures)
    parts = [f"{est.get('profile')}: {1e3 * (est.get('per_beat_s') or 0):.3g} ms a beat"]
    if est.get("decision_s") is not None:
        parts.append(f"{1e3 * est['decision_s']:.3g} ms a decision")
    if est.get("sram_bytes") is not None:
        parts.append(f"arena {est['sram_bytes']:,} B of {est['sram_limit']:,} B")
    if est.get("energy_j_per_day") is not None:
        parts.append(f"{est['energy_j_per_day']:,.0f} J a day")
    return judged(INDEX, NAME, failures, ", ".join(parts) + " (all within the plan)",
                  criteria=ctx.plan.criteria("device"), metrics={"estimate": est, "emulator": emu})
