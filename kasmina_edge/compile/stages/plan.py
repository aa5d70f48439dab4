"""Stage 1, plan: check everything that is cheap to check (files, target, profile, bits, blueprints, a
size estimate against the profile) and say what the build will do, converting nothing."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from kasmina_edge.compile.stages.ptq_tolerance import PTQ_TOLERANCE_POINTS
from kasmina_edge.compile.stages.request import BuildRequest
from kasmina_edge.compile.stages.sign import signing_key
from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.core.build_errors import (
    BuildError,
    NoCheckpointError,
    ProfileLimitError,
    UnknownTargetError,
    UnsupportedBlueprintError,
)
from kasmina_edge.core.formats import TARGET_FORMATS, TFLITE_FORMATS

if TYPE_CHECKING:
    from kasmina_edge.core.profiles import HardwareProfile, Target

MAX_SITE_HEADROOM = 16.0
ARTIFACT_OVERHEAD_BYTES = 2500  # per model (segment or kernel) in the size estimate


@dataclass(frozen=True)
class PlannedKernel:
    key: str
    site: int
    blueprint: str
    parameters: int


@dataclass
class BuildPlan:
    request: BuildRequest
    target: Any  # core.profiles.Target
    profile: Any  # core.profiles.HardwareProfile
    model_name: str
    sites: list[tuple[str, int, int]]  # (name, channels, length)
    base_parameters: int
    kernels: list[PlannedKernel]
    steps: list[str]
    estimated_bytes: int
    pending: list[str] = field(default_factory=list)

    @property
    def format(self) -> str:
        return str(self.target.format)

    def render(self, console: Console) -> None:
        from rich.table import Table

        r = self.request
        console.print(
            f"[bold]build plan[/]: {r.checkpoint} + {r.seeds or '(no seed library)'} → {r.out_path()} "
            f"for [bold]{self.target.name}[/] ({self.format}), profile [bold]{self.profile.name}[/], {r.bits}-bit kernels"
        )
        t = Table(
            title=f"model {self.model_name}: {self.base_parameters:,} base parameters, {len(self.sites)} seed sites"
        )
        for col in ("artifact", "what", "site", "parameters"):
            t.add_column(col)
        for i in range(len(self.sites) + 1):
            t.add_row(f"segment_{i}", "base segment" + (" (+ rr)" if i == len(self.sites) else ""), "-", "")
        for k in self.kernels:
            t.add_row(k.key, f"seed kernel: {k.blueprint}", str(k.site), f"{k.parameters:,}")
        if not r.kernels_only:
            t.add_row("base_whole", "fused base: the segments in one model (if it keeps the rules)", "-", "")
        console.print(t)
        for i, step in enumerate(self.steps, 1):
            console.print(f"  {i:2d}. {step}")
        limit = self.profile.memory.flash_bytes
        console.print(
            f"estimated artifact bytes ~{self.estimated_bytes:,}"
            + (f" of {limit:,} B flash" if limit else "")
        )
        for p in self.pending:
            console.print(f"[yellow]pending:[/] {p}")


def plan(req: BuildRequest) -> BuildPlan:
    """Validate the request and describe the build, without converting anything."""
    from kasmina_edge.host.experiment import load_checkpoint
    from kasmina_edge.host.model import ModelConfig

    if not req.checkpoint.exists():
        raise NoCheckpointError(
            f"{req.checkpoint}: checkpoint not found (train one with `kasmina-edge train`)"
        )
    if req.seeds is not None and not req.seeds.is_dir():
        raise NoCheckpointError(f"{req.seeds}: seed library folder not found")
    target, profile = _target_and_profile(req)
    ckpt = load_checkpoint(req.checkpoint)
    cfg = ModelConfig.from_dict(ckpt["model_config"])
    shapes = cfg.site_shapes()
    sites = [(name, shapes[name][0], shapes[name][1]) for name in cfg.site_names]
    base_params = sum(
        int(v.numel())
        for k, v in ckpt["state"].items()
        if k.startswith(("blocks.", "head."))
        and v.dtype.is_floating_point
        and not k.endswith(("rr_mean", "rr_std"))
    )
    kernels = _planned_kernels(req.seeds, target.name) if req.seeds else []
    estimated = _estimated_bytes(req, profile, base_params, len(sites), kernels)
    steps, pending = _steps(req, target, profile, cfg.name, len(sites), len(kernels))
    try:
        signing_key(req.keys)
    except KasminaError as exc:
        pending.append(f"signing: {exc}")
    return BuildPlan(req, target, profile, cfg.name, sites, base_params, kernels, steps, estimated, pending)


def _target_and_profile(req: BuildRequest) -> tuple[Target, HardwareProfile]:
    """The catalog's target and profile for the request, checked against each other and the bits asked."""
    from kasmina_edge.core import catalog
    from kasmina_edge.core.profiles import CatalogError

    try:
        target = catalog.target(req.target)
    except CatalogError as exc:
        raise UnknownTargetError(str(exc)) from exc
    profile = catalog.hardware(req.profile or target.default_profile)
    if target.name not in profile.targets:
        raise UnknownTargetError(
            f"--profile {profile.name}: runs targets {', '.join(profile.targets)}, not {target.name}"
        )
    if req.bits not in target.bits_allowed:
        raise UnsupportedBlueprintError(
            f"--bits {req.bits}: target {target.name} allows {'/'.join(map(str, target.bits_allowed))}-bit only "
            f"(targets/{target.name}.toml bits_allowed)"
        )
    if target.format not in TARGET_FORMATS:
        raise UnknownTargetError(f"target {target.name}: format {target.format!r} has no exporter here")
    if not 1.0 <= req.site_headroom <= MAX_SITE_HEADROOM:
        raise BuildError(
            f"--site-headroom {req.site_headroom:g}: must be between 1 (none) and {MAX_SITE_HEADROOM:g} "
            f"(each doubling costs the base one bit of its 8 at every site)"
        )
    return target, profile


def _planned_kernels(seeds: Path, target: str) -> list[PlannedKernel]:
    """The library's seeds, each checked to run on the target (the host's library reader: one definition)."""
    from kasmina_edge.host.blueprints import get_blueprint
    from kasmina_edge.host.seed_library import LIBRARY_JSON, SeedLibrary

    lib = seeds / LIBRARY_JSON
    if not lib.exists():
        raise NoCheckpointError(f"{lib}: seed library not found (write one with `kasmina-edge morph`)")
    kernels: list[PlannedKernel] = []
    for entry in SeedLibrary.load(seeds).entries.values():
        spec = get_blueprint(entry.blueprint)
        params = dict(entry.blueprint_params)
        if not spec.supports(target, int(entry.channels), **params):
            runs_on = ", ".join(
                sorted(t for t in spec.targets if spec.supports(t, int(entry.channels), **params))
            )
            raise UnsupportedBlueprintError(
                f"seed {entry.key}: blueprint {entry.blueprint} cannot run on target {target} "
                f"(it runs on: {runs_on or 'none'})"
            )
        kernels.append(
            PlannedKernel(entry.key, int(entry.site_index), entry.blueprint, int(entry.param_count))
        )
    return kernels


def _estimated_bytes(
    req: BuildRequest, profile: HardwareProfile, base_params: int, n_sites: int, kernels: list[PlannedKernel]
) -> int:
    """Artifact bytes, roughly: int8 base weights, kernel weights at their bits, a per-model overhead."""
    kernel_bytes = sum(k.parameters for k in kernels) * (req.bits / 8)
    estimated = int(base_params + kernel_bytes + ARTIFACT_OVERHEAD_BYTES * (n_sites + 1 + len(kernels)))
    flash = profile.memory.flash_bytes
    if flash and estimated > flash:
        raise ProfileLimitError(
            f"model too big for {profile.name}: ~{estimated:,} B of artifacts (base {base_params:,} int8 weights) "
            f"exceed its {flash:,} B of flash"
        )
    return estimated


def _steps(
    req: BuildRequest, target: Target, profile: HardwareProfile, model_name: str, n_sites: int, n_kernels: int
) -> tuple[list[str], list[str]]:
    """The build's steps in words, and what is pending (tools missing on this host)."""
    fmt = target.format
    steps = [
        f"load {req.checkpoint.name} ({model_name}) and {n_kernels} seed kernel(s); split at {n_sites} seed sites",
        (
            "site grids forced to the base bundle's (kernels for a base already on the device)"
            if req.site_grids
            else f"calibrate one int8 grid per site on {req.calibration_patients} unseen synthetic patients"
            + (f", {req.site_headroom:g}x head-room for patient kernels" if req.site_headroom > 1 else "")
        ),
        "export base segments: PTQ int8 (per-channel weights, per-tensor activations), BatchNorm folded, "
        + (
            "litert-torch full-int8 TFLite, int8 I/O"
            if fmt in TFLITE_FORMATS
            else "ONNX QDQ via onnxruntime (opset 13)"
        ),
        (
            f"export seed kernels: Brevitas QAT w{req.bits}a8"
            + (", weights packed two per byte" if req.bits == 4 else "")
            if req.bits == 4
            else f"export seed kernels: PTQ int8, Brevitas QAT 8-bit where PTQ loses > {PTQ_TOLERANCE_POINTS} macro-F1 point"
        ),
        "assert equal quantization grids on both sides of every cut",
    ]
    pending: list[str] = []
    if target.name == "edgetpu":
        from kasmina_edge.core.edgetpu_rules import compiler_path

        steps.append("Edge TPU rule check, predicted CPU partition and parameter-cache use (co-compiled)")
        if compiler_path() is None:
            pending.append(
                "edgetpu_compiler not on PATH: compilation recorded as pending (runs on the emulator)"
            )
        else:
            steps.append("edgetpu_compiler -s (co-compile all artifacts), parse its log")
    if target.runtime == "tflite-micro":
        steps.append(
            f"TFLite Micro: measure arenas, check {profile.name} SRAM/flash, compare with LiteRT reference kernels"
        )
        steps.append("write model_data.cc/.h for firmware")
    steps.append(
        f"parity vs torch on {req.heldout_patients} held-out synthetic patients and MIT-BIH 100 (if present); "
        + (
            "a missed bound stops the build (--strict)"
            if req.strict
            else "a missed bound is a warning recorded in the bundle"
        )
    )
    if not req.kernels_only:
        steps.append(
            "fused base base_whole: the segments stitched at their cuts into one model, run by the device while no "
            "kernel is live; kept when it reproduces the chain and keeps the target's rules (else left out, the "
            "reason in the manifest's fused_base)"
        )
    steps.append(f"reference vectors per artifact, build report, bundle {req.out_path()}")
    return steps, pending
