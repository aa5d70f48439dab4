"""Whether a set of artifacts can run on a hardware profile, and which limit it breaks when it cannot.

Each check names the limit (runtime, bits, dtype, op, flash, SRAM) and the numbers: an incompatible
combination is a row of the report, never an exception. Checked, from the catalog's own data:

* the profile's runtime runs the artifact format (TFLite on LiteRT / TFLite Micro / the Edge TPU, ONNX
  on ONNX Runtime);
* 4-bit weights are allowed by one of the profile's targets of that format (``bits_allowed``);
* the device has arithmetic for the artifact's dtype, or a CPU to fall back to (an Edge TPU partitions);
* TFLite Micro's resolver has every op (the ``cortex-m`` target's ``allowed_ops``);
* every artifact fits the flash, and the TFLite Micro arenas (each base segment's, plus the largest
  kernel's per site: all segments stay loaded, each site has one kernel slot) fit the SRAM.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from kasmina_edge.core.catalog import list_targets
from kasmina_edge.core.profiles import HardwareProfile, Target

RUNTIMES_FOR_FORMAT = {
    "tflite": frozenset({"litert", "litert-edgetpu", "tflite-micro"}),
    "onnx": frozenset({"onnxruntime"}),
}
FLASH_KINDS = ("mcu", "npu")


@dataclass(frozen=True)
class Limit:
    """One limit a profile breaks: its name and the numbers."""

    limit: str  # runtime | bits | dtype | op | flash | sram
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ArtifactFacts:
    """What the checks need to know about one artifact."""

    name: str
    kind: str  # segment | kernel | whole | model
    format: str  # tflite-int8, onnx-qdq, onnx-qcdq, ...
    bits: int
    bytes: int
    dtype: str
    op_names: tuple[str, ...]
    site: int | None = None
    arena_bytes: int | None = None  # TFLite Micro arena estimate (TFLite artifacts)


def family(fmt: str) -> str:
    return "tflite" if fmt.startswith("tflite") else "onnx" if fmt.startswith("onnx") else fmt


@dataclass(frozen=True)
class MemoryUse:
    flash_bytes: int
    flash_limit: int
    sram_bytes: int | None  # TFLite Micro arenas; None where no arena is planned ahead
    sram_limit: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def memory_use(artifacts: Sequence[ArtifactFacts], profile: HardwareProfile) -> MemoryUse:
    """Flash for every artifact; SRAM for the segments' arenas plus one kernel slot per site."""
    runnable = [a for a in artifacts if a.kind != "whole"] or list(artifacts)
    flash = sum(a.bytes for a in runnable)
    sram: int | None = None
    if profile.kind in FLASH_KINDS and all(a.arena_bytes is not None for a in runnable):
        per_site: dict[int, int] = {}
        base = 0
        for a in runnable:
            if a.kind == "kernel" and a.site is not None:
                per_site[a.site] = max(per_site.get(a.site, 0), a.arena_bytes or 0)
            else:
                base += a.arena_bytes or 0
        sram = base + sum(per_site.values())
    return MemoryUse(flash, profile.memory.flash_bytes, sram, profile.memory.sram_bytes)


def _targets(profile: HardwareProfile, targets: Mapping[str, Target]) -> list[Target]:
    return [targets[t] for t in profile.targets if t in targets]


def check(
    artifacts: Sequence[ArtifactFacts],
    profile: HardwareProfile,
    targets: Mapping[str, Target] | None = None,
) -> tuple[list[Limit], list[str]]:
    """The limits ``profile`` breaks for these artifacts, and notes that are not limits."""
    targets = targets if targets is not None else {t.name: t for t in list_targets()}
    limits: list[Limit] = []
    notes: list[str] = []
    mine = _targets(profile, targets)
    for fam in sorted({family(a.format) for a in artifacts}):
        if profile.runtime not in RUNTIMES_FOR_FORMAT.get(fam, frozenset()):
            kind = "TFLite" if profile.runtime != "onnxruntime" else "ONNX"
            limits.append(
                Limit("runtime", f"{fam} artifacts: {profile.name} runs {profile.runtime} ({kind} only)")
            )
    loadable = not limits
    four = [a for a in artifacts if a.bits == 4]
    if four:
        fam = family(four[0].format)
        same = [
            t for t in mine if family(t.format) == fam
        ] or mine  # no target of that format: any of its own
        allowed = sorted({b for t in same for b in t.bits_allowed})
        if 4 not in allowed:
            limits.append(
                Limit(
                    "bits",
                    f"{len(four)} artifact(s) with 4-bit weights ({four[0].name}); {profile.name}'s targets "
                    f"({', '.join(profile.targets)}) allow {'/'.join(map(str, allowed)) or 'none'}-bit",
                )
            )
    if not loadable:
        return limits, notes  # the rest assumes the runtime can load the artifacts
    for a in artifacts:
        key = {"float32": "fp32", "float16": "fp16", "int4": "int4"}.get(a.dtype, "int8")
        if key == "int4":
            continue  # unpacked to int8 where there is no int4 rate
        if key not in profile.peak_ops_per_s:
            if profile.runtime == "litert-edgetpu":
                notes.append(f"{a.name}: {a.dtype} ops run in the CPU partition")
            else:
                limits.append(
                    Limit(
                        "dtype",
                        f"{a.name} computes in {a.dtype}; {profile.name} has {', '.join(profile.peak_ops_per_s)} only",
                    )
                )
    if profile.runtime == "tflite-micro":
        resolvers = [t for t in mine if t.runtime == "tflite-micro" and t.rules.allowed_ops is not None]
        for t in resolvers[:1]:
            for a in artifacts:
                missing = sorted({op for op in a.op_names if not t.rules.allows(op)})
                if missing:
                    limits.append(
                        Limit(
                            "op",
                            f"{a.name}: {', '.join(missing)} not in the TFLite Micro resolver (targets/{t.name}.toml)",
                        )
                    )
    use = memory_use(artifacts, profile)
    if profile.kind in FLASH_KINDS and use.flash_limit and use.flash_bytes > use.flash_limit:
        limits.append(
            Limit(
                "flash",
                f"artifacts need {use.flash_bytes:,} B of flash, {profile.name} has {use.flash_limit:,} B",
            )
        )
    if use.sram_bytes is not None and use.sram_limit and use.sram_bytes > use.sram_limit:
        limits.append(
            Limit(
                "sram",
                f"TFLite Micro arenas need {use.sram_bytes:,} B of SRAM, {profile.name} has {use.sram_limit:,} B",
            )
        )
    return limits, notes
