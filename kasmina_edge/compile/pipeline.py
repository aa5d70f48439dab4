"""The build: checkpoint + seed library → quantized, split, exported, checked artifacts → a signed bundle.

``plan()`` checks everything that is cheap to check and says what ``build()`` will do; ``build()`` runs
the stages of :mod:`kasmina_edge.compile.stages` in order, each a module with a typed input and output:

plan → lower (the model cut at its seed sites) → windows → calibrate (site grids, artifact specs) →
export per format → check the cuts → chains → PTQ tolerance (QAT where PTQ loses too much) →
accuracy and parity vs torch → the fused base (the segments stitched into ``base_whole``) → check per
target → package → sign.

The names other packages use (``BuildRequest``, ``EvalSet``, ``load_data``, ``load_segmented``, ...) are
importable from here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from kasmina_edge.compile.report import BuildReport
from kasmina_edge.compile.stages.accuracy import COMMON_CLASS_BEATS, judge_accuracy
from kasmina_edge.compile.stages.calibrate import calibrate
from kasmina_edge.compile.stages.chains import plan_chains
from kasmina_edge.compile.stages.cuts import check_cuts
from kasmina_edge.compile.stages.export import ArtifactSet, BuiltArtifact, export_artifact
from kasmina_edge.compile.stages.fused_base import add_fused_base, keep_target_rules
from kasmina_edge.compile.stages.fused_pieces import add_fused_pieces
from kasmina_edge.compile.stages.lower import load_segmented, lower
from kasmina_edge.compile.stages.package import BundleContents, PackageInput, kernels_only, package
from kasmina_edge.compile.stages.plan import MAX_SITE_HEADROOM, BuildPlan, PlannedKernel, plan
from kasmina_edge.compile.stages.progress import StepProgress
from kasmina_edge.compile.stages.ptq_tolerance import (
    PTQ_MIN_AGREEMENT,
    PTQ_TOLERANCE_POINTS,
    ToleranceJob,
    enforce_ptq_tolerance,
)
from kasmina_edge.compile.stages.request import QAT_STEPS, BuildRequest
from kasmina_edge.compile.stages.sign import sign_and_write, signing_key
from kasmina_edge.compile.stages.target_checks import check_target
from kasmina_edge.compile.stages.windows import EvalSet, default_record100, load_data, load_windows

__all__ = [
    "COMMON_CLASS_BEATS",
    "MAX_SITE_HEADROOM",
    "PTQ_MIN_AGREEMENT",
    "PTQ_TOLERANCE_POINTS",
    "QAT_STEPS",
    "BuildPlan",
    "BuildRequest",
    "BuildResult",
    "BuiltArtifact",
    "EvalSet",
    "PlannedKernel",
    "build",
    "default_record100",
    "kernels_only",
    "load_data",
    "load_segmented",
    "plan",
]


@dataclass
class BuildResult:
    report: BuildReport
    bundle: Path | None
    artifacts: dict[str, bytes]
    files: dict[str, bytes]
    manifest: dict[str, Any]
    parity_misses: list[str] = field(default_factory=list)  # one warning line per missed bound


def build(req: BuildRequest, console: Console | None = None, *, write: bool = True) -> BuildResult:
    """Run the whole build; ``console`` shows progress (None: quiet)."""
    t_start = time.perf_counter()
    the_plan = plan(req)
    target, fmt = the_plan.target, the_plan.format
    key = signing_key(req.keys) if write else None  # a missing key stops the build before any work
    report = _new_report(the_plan)
    with StepProgress(console, _step_count(the_plan)) as steps:
        import torch

        torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
        with steps.step("load model and seed library"):
            lowered = lower(req)
        with steps.step("calibration and held-out windows"):
            windows = load_windows(req)
        with steps.step("site grids"):
            cal = calibrate(req, lowered.model, windows)
        arts = ArtifactSet({}, fmt, fused=target.name == "x86")
        for spec in cal.specs:
            with steps.step(f"export {spec.name}"):
                arts.built[spec.name] = export_artifact(spec, req, target.name, fmt, lowered.model)
        with steps.step("check cut grids"):
            report.cuts_checked = check_cuts(cal.specs, arts.built)
        chains = plan_chains(cal.specs, lowered.model)
        job = ToleranceJob(lowered.model, cal.specs, arts, windows.evals, chains, req.qat_steps, steps)
        _ptq_tolerance(req, report, job)
        with steps.step("parity and accuracy vs torch"):
            misses = judge_accuracy(report, lowered.model, windows.evals, chains.configs, arts.run, cal.band,
                                    strict=req.strict)  # fmt: skip
        if not req.kernels_only:
            with steps.step("fused base"):
                add_fused_base(report, arts, chains.segments, lowered.model, windows.evals[0], cal.logit_grid)
                add_fused_pieces(report, arts, chains.segments, windows.evals[0])
        with steps.step("target checks"):
            extra = keep_target_rules(report, arts, lambda: check_target(
                report, target, the_plan.profile, arts, windows.evals[0], chains.segments))
        with steps.step("reference vectors and packing"):
            contents = package(
                report, PackageInput(req, lowered, cal, arts, windows.evals[0], chains, extra, misses)
            )
        report.timings_s = {k: round(v, 3) for k, v in steps.timings.items()}
        report.timings_s["total"] = round(time.perf_counter() - t_start, 3)
        bundle_path = _sign(report, req, contents, key, steps) if write else None
    warnings = [m.warning for m in misses]
    return BuildResult(report, bundle_path, arts.data(), contents.files, contents.manifest, warnings)


def _new_report(the_plan: BuildPlan) -> BuildReport:
    target = the_plan.target
    report = BuildReport(
        target=target.name,
        profile=the_plan.profile.name,
        bits=the_plan.request.bits,
        format=the_plan.format,
        pending=list(the_plan.pending),
    )
    report.notes.append(
        "quantization: weights per output channel, symmetric; activations per tensor; site grids symmetric int8"
        + (
            "; w7 = 7-bit weights (ONNX Runtime int8 kernels saturate on x86 without VNNI)"
            if target.name == "x86"
            else ""
        )
    )
    return report


def _step_count(the_plan: BuildPlan) -> int:
    """Progress steps: load, windows, grids; one export per artifact; cuts, parity, target, packing,
    signing; the fused base (full bundles); the PTQ tolerance when 8-bit kernels are judged on population windows (QAT runs add theirs)."""
    req = the_plan.request
    return (
        3
        + len(the_plan.sites)
        + 1
        + len(the_plan.kernels)
        + 5
        + int(not req.kernels_only)
        + int(req.bits == 8 and bool(the_plan.kernels) and req.kernel_beats is None)
    )


def _ptq_tolerance(req: BuildRequest, report: BuildReport, job: ToleranceJob) -> None:
    if req.bits != 8 or not job.chains.morphed:
        return
    if req.kernel_beats is not None:
        # A patient's seeds were trained together, each behind the others: a chain with one of them
        # alone is not one the device runs, and QAT judged on it picked kernels that broke the joint
        # chain (measured, MIT-BIH 209: agreement 54 % with two QAT kernels, 98 % all PTQ). PTQ,
        # calibrated on the patient's beats, with each residual cut to its site's span.
        report.notes.append("patient kernels: PTQ int8 on the patient's beats (judged together below)")
        return
    with job.progress.step("PTQ tolerance per kernel"):
        enforce_ptq_tolerance(job, report)


def _sign(
    report: BuildReport, req: BuildRequest, contents: BundleContents, key: Any, steps: StepProgress
) -> Path:
    with steps.step("sign and write bundle"):
        return sign_and_write(report, req, contents, key)
