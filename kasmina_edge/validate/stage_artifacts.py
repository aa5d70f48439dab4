"""Stage 0, artifacts: the signature and every file's SHA-256 (a tampered artifact stops here), the manifest,
every segment and kernel reproducing its reference vectors on this host's runtime for the profile, and the
target's rules (runtime, bits, ops, flash, SRAM: ``profiler.compat``)."""

from __future__ import annotations

from typing import Any

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.validate.context import ValidationContext
from kasmina_edge.validate.result import StageResult, judged

INDEX, NAME = 0, "artifacts"


def _reference_checks(ctx: ValidationContext, failures: list[str]) -> list[dict[str, Any]]:
    from kasmina_edge.runtime.image import check_reference, site_grid

    image = ctx.image
    assert image is not None
    tolerance = float(image.backend.info().reference_tolerance_lsb)
    rows_min = ctx.plan.artifacts.reference_rows_min
    out: list[dict[str, Any]] = []
    n = len(image.segments)
    jobs = [(e.name, seg, i == n - 1, None if i == n - 1 else site_grid(image, i))
            for i, (seg, e) in enumerate(zip(image.segments, image.segment_entries, strict=True))]
    jobs += [(k.name, k.model, False, site_grid(image, k.site)) for k in image.kernels.values()]
    for name, model, logits, grid in jobs:
        refs = image.references.get(name)
        if refs is None:
            failures.append(f"artifact {name!r} has no reference vectors: this host cannot check it")
            continue
        chk = check_reference(model, refs, tolerance, logits=logits, grid=grid)
        out.append({"artifact": name, "passed": chk.passed, **chk.metrics()})
        if not chk.passed:
            failures.append(f"artifact {name!r} does not reproduce its reference vectors on "
                            f"{image.backend.info().name} ({chk.max_error_lsb:g} LSB, tolerance {tolerance:g})")
        elif chk.rows < rows_min:
            failures.append(f"artifact {name!r}: {chk.rows} reference rows, the plan asks for {rows_min}")
    return out


def _target_rules(ctx: ValidationContext, failures: list[str]) -> dict[str, Any]:
    from kasmina_edge.core.catalog import list_targets
    from kasmina_edge.profiler import compat
    from kasmina_edge.profiler.report import load_subject

    profile = ctx.hardware()
    subject = load_subject(ctx.bundle_path, ctx.keys)
    limits, notes = compat.check([a.facts for a in subject.runnable()], profile,
                                 {t.name: t for t in list_targets()})
    assert ctx.bundle is not None
    target = ctx.bundle.manifest.target
    if target not in profile.targets:
        failures.append(f"bundle is built for target {target}; profile {profile.name} runs {', '.join(profile.targets)}")
    for lim in limits:
        failures.append(f"target rule {lim.limit} on {profile.name}: {lim.detail}")
    return {"profile": profile.name, "target": target, "limits": [x.to_dict() for x in limits], "notes": notes}


def _add_kernel_bundles(ctx: ValidationContext, failures: list[str]) -> list[dict[str, Any]]:
    """Each kernel-only bundle verified and installed on the image as the device installs it (pinned)."""
    from kasmina_edge.contracts.bundle import read_bundle
    from kasmina_edge.runtime.image import add_kernel_bundle

    assert ctx.image is not None
    out: list[dict[str, Any]] = []
    for path in ctx.kernel_paths:
        try:
            kb = read_bundle(path, ctx.keys)
            if kb.manifest.kind != "kernels":
                failures.append(f"--kernels {path}: a {kb.manifest.kind} bundle, not a kernel-only one")
                continue
            added = add_kernel_bundle(ctx.image, kb)
        except KasminaError as exc:
            failures.append(f"kernel bundle {path.name} does not install on the base: {exc}")
            continue
        out.append({"bundle": path.name, "bundle_id": kb.manifest.bundle_id, "kernels": added})
    return out


def run(ctx: ValidationContext) -> StageResult:
    from kasmina_edge.contracts.bundle import read_bundle
    from kasmina_edge.validate.device_run import load_image_for

    criteria = {"signature": "verifies with the keys", "files": "every SHA-256 matches the signed manifest",
                "reference_vectors": "every segment and kernel reproduces them on this host",
                "target_rules": "no limit of the profile broken", **ctx.plan.criteria("artifacts")}
    try:
        ctx.bundle = read_bundle(ctx.bundle_path, ctx.keys)
    except KasminaError as exc:  # tampered, unsigned, signed by another key, malformed manifest
        return judged(INDEX, NAME, [f"bundle does not verify: {exc}"], "", criteria=criteria)
    m = ctx.bundle.manifest
    failures: list[str] = []
    metrics: dict[str, Any] = {"bundle_id": m.bundle_id, "target": m.target, "profile": m.profile,
                               "version": m.version, "key_id": ctx.bundle.key_id,
                               "artifacts": len(m.artifacts), "kernels": len(m.kernels())}
    try:
        ctx.image = load_image_for(ctx.bundle, ctx.hardware().runtime)
    except KasminaError as exc:
        return judged(INDEX, NAME, [f"the image does not load on this host's runtime: {exc}"], "",
                      criteria=criteria, metrics=metrics)
    metrics["runtime"] = ctx.image.backend.info().name
    metrics["kernel_bundles"] = _add_kernel_bundles(ctx, failures)
    metrics["reference_checks"] = _reference_checks(ctx, failures)
    metrics["target_rules"] = _target_rules(ctx, failures)
    ok = (f"signature {ctx.bundle.key_id} verifies, {len(m.files)} files match, "
          f"{len(metrics['reference_checks'])} artifacts reproduce their reference vectors on "
          f"{metrics['runtime']}, no rule of {metrics['target_rules']['profile']} broken")
    return judged(INDEX, NAME, failures, ok, criteria=criteria, metrics=metrics)
