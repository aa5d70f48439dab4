"""The build report: every artifact with its size, ops and quantization, accuracy against fp32,
how the target maps it, and what is still pending. JSON for machines, rich tables for people."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from rich.console import Console, Group
from rich.table import Table

# layout and quantization plumbing, left out of the op column (the JSON keeps every op)
_PLUMBING = frozenset({"RESHAPE", "TRANSPOSE", "QuantizeLinear", "DequantizeLinear", "Unsqueeze", "Squeeze"})


@dataclass
class ArtifactReport:
    name: str
    kind: str  # segment | kernel | whole (the fused base)
    file: str
    format: str  # tflite-int8 | onnx-qdq | onnx-qcdq
    bytes: int
    sha256: str
    quantization: str  # e.g. "ptq int8 (per-channel w, per-tensor a)", "qat w4a8"
    ops: dict[str, int]
    parameters: int
    site: int | None = None
    seed: str | None = None
    blueprint: str | None = None
    bits: int = 8
    packed_bytes: int | None = None  # 4-bit weights two per byte: what travels
    packed_file: str | None = None
    arena_bytes: int | None = None  # TFLite Micro
    edgetpu: dict[str, Any] | None = None  # ops mapped / on CPU
    micro_parity: dict[str, Any] | None = None


@dataclass
class AccuracyRow:
    dataset: str  # "synthetic held-out", "MIT-BIH 100"
    configuration: str  # "base" (no kernel live) or "morphed" (one kernel per site)
    windows: int
    fp32_macro_f1: float
    quant_macro_f1: float
    argmax_agreement: float
    p99_logit_error: float
    logit_bound: float
    fp32_macro_f1_common: float = float("nan")  # over classes with >= 10 beats (see pipeline)
    quant_macro_f1_common: float = float("nan")
    class_support: list[int] = field(default_factory=list)

    @property
    def delta_points(self) -> float:
        return 100.0 * (self.quant_macro_f1 - self.fp32_macro_f1)


@dataclass
class BuildReport:
    target: str
    profile: str
    bits: int
    format: str
    artifacts: list[ArtifactReport] = field(default_factory=list)
    accuracy: list[AccuracyRow] = field(default_factory=list)
    cuts_checked: int = 0
    target_mapping: dict[str, Any] = field(default_factory=dict)
    memory: dict[str, Any] = field(default_factory=dict)
    pending: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # the fused base (artifact base_whole): carried or not, and why (also in the manifest's "fused_base")
    fused_base: dict[str, Any] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)
    bundle: str | None = None
    bundle_bytes: int | None = None
    signed: bool = False

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["accuracy"] = [{**asdict(a), "delta_points": round(a.delta_points, 3)} for a in self.accuracy]
        return out

    # -------------------------------------------------------------- rendering

    def artifacts_table(self) -> Table:
        t = Table(title=f"artifacts ({self.target}, {self.format}, profile {self.profile})")
        for col, just in [("artifact", "left"), ("site", "right"), ("bytes", "right"), ("packed", "right"),
                          ("quant", "left"), ("ops", "left"), ("target map", "left")]:  # fmt: skip
            t.add_column(col, justify=just)  # type: ignore[arg-type]
        for a in self.artifacts:
            ops = " ".join(f"{k}×{v}" if v > 1 else k for k, v in sorted(a.ops.items()) if k not in _PLUMBING)
            mapping = ""
            if a.edgetpu is not None:
                mapping = f"TPU {a.edgetpu['ops_mapped']}/{a.edgetpu['ops_total']}"
                if a.edgetpu.get("cpu_from"):
                    mapping += f" (CPU from {a.edgetpu['cpu_from']['op']})"
            elif a.arena_bytes is not None:
                mapping = f"arena {a.arena_bytes:,} B"
            t.add_row(
                a.name,
                "-" if a.site is None else str(a.site),
                f"{a.bytes:,}",
                "-" if a.packed_bytes is None else f"{a.packed_bytes:,}",
                a.quantization,
                ops,
                mapping,
            )
        return t

    def accuracy_table(self) -> Table:
        t = Table(title="accuracy against fp32 (macro-F1 %; Δ common: classes with ≥ 10 beats)")
        quant = "4-bit" if self.bits == 4 else "int8"
        for col in ("data", "config", "beats", "fp32", quant, "Δ", "Δ common", "argmax %", "p99 err (bound)"):
            t.add_column(col, justify="left" if col in ("data", "config") else "right")
        for r in self.accuracy:
            t.add_row(
                r.dataset,
                r.configuration,
                str(r.windows),
                f"{100 * r.fp32_macro_f1:.2f}",
                f"{100 * r.quant_macro_f1:.2f}",
                f"{r.delta_points:+.2f}",
                f"{100 * (r.quant_macro_f1_common - r.fp32_macro_f1_common):+.2f}",
                f"{100 * r.argmax_agreement:.2f}",
                f"{r.p99_logit_error:.4f} ({r.logit_bound:.4f})",
            )
        return t

    def render(self, console: Console) -> None:
        parts: list[Any] = [self.artifacts_table()]
        if self.accuracy:
            parts.append(self.accuracy_table())
        console.print(Group(*parts))
        if self.target_mapping:
            m = self.target_mapping
            if "cache_bytes" in m:
                console.print(
                    f"Edge TPU: {m['ops_mapped']} ops mapped, {m['ops_cpu']} on the CPU; parameter cache "
                    f"{m['cache_used_bytes']:,} / {m['cache_bytes']:,} B ({'fits' if m['fits_cache'] else 'does NOT fit'}); "
                    f"compiler: {m['compiler']}"
                )
        scalars = {k: v for k, v in self.memory.items() if isinstance(v, int)}
        if scalars:
            console.print("memory: " + ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in scalars.items()))
        console.print(f"cuts checked (grids equal on both sides): {self.cuts_checked}")
        for note in self.notes:
            console.print(f"note: {note}")
        for p in self.pending:
            console.print(f"[yellow]pending:[/] {p}")
        if self.bundle:
            console.print(
                f"bundle: {self.bundle} ({self.bundle_bytes or 0:,} B, {'signed' if self.signed else 'not signed'})"
            )
