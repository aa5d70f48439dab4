"""Whether a bundle fits a hardware profile: target, flash for its slots, TFLite Micro arenas in SRAM, memory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from firmware_sim.errors import FlashRefused
from kasmina_edge.contracts.bundle import Bundle
from kasmina_edge.core.formats import RUNNABLE_KINDS
from kasmina_edge.core.profiles import HardwareProfile


def runnable_bytes(bundle: Bundle) -> int:
    """What the device keeps in its own storage: segments, kernels, a policy (not reports or references)."""
    return sum(a.bytes for a in bundle.manifest.artifacts if a.kind in RUNNABLE_KINDS)


def check_fits(bundle: Bundle, profile: HardwareProfile, *, slots: int = 2) -> list[str]:
    """Refuse a bundle that does not fit ``profile``; return notes on what was (not) checked."""
    m = bundle.manifest
    notes: list[str] = []
    if m.target not in profile.targets:
        raise FlashRefused(
            f"bundle is built for target {m.target}; profile {profile.name} runs {', '.join(profile.targets)}"
        )
    need = runnable_bytes(bundle)
    flash = profile.memory.flash_bytes
    if flash:
        if slots * need > flash:
            raise FlashRefused(
                f"bundle needs {slots} x {need:,} B (A/B slots) of flash; {profile.name} has {flash:,} B "
                f"(profiles/hardware/{profile.name}.toml memory.flash_bytes)"
            )
    else:
        notes.append(
            f"{profile.name} has no flash of its own (memory.flash_bytes = 0): the model lives on its host"
        )
    report = bundle_report(bundle)
    arenas = (report.get("memory") or {}).get("arenas") or {}
    if profile.runtime == "tflite-micro":
        sram_need = sum(int(v) for v in arenas.values()) if arenas else None
        if sram_need is None:
            notes.append("no TFLite Micro arena sizes in the bundle's report: SRAM not checked")
        elif sram_need > profile.memory.sram_bytes:
            raise FlashRefused(
                f"every artifact's arena at boot needs {sram_need:,} B of SRAM; {profile.name} has "
                f"{profile.memory.sram_bytes:,} B (profiles/hardware/{profile.name}.toml memory.sram_bytes)"
            )
    cache = profile.memory.param_cache_bytes
    if cache is not None and need > cache:
        notes.append(
            f"artifacts ({need:,} B) exceed the {cache:,} B parameter cache: weights stream every invoke"
        )
    dram = profile.memory.dram_bytes
    if dram and need > dram:
        raise FlashRefused(
            f"bundle needs {need:,} B of memory; {profile.name} has {dram:,} B "
            f"(profiles/hardware/{profile.name}.toml memory.dram_bytes)"
        )
    return notes


def require_bundle_file(bundle_path: Path) -> None:
    if not Path(bundle_path).is_file():
        raise FlashRefused(f"{bundle_path}: no such bundle")


def bundle_report(bundle: Bundle) -> dict[str, Any]:
    raw = bundle.files.get("report.json")
    if raw is None:
        return {}
    try:
        out = json.loads(raw)
    except ValueError:
        return {}
    return out if isinstance(out, dict) else {}
