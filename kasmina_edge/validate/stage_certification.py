"""Stage 6, certification: the compliance checklist (``certify``) on the bundle and the logs this run wrote;
the plan names the checks that must pass (the others are reported)."""

from __future__ import annotations

from kasmina_edge.validate.context import ValidationContext
from kasmina_edge.validate.result import StageResult, judged

INDEX, NAME = 6, "certification"


def run(ctx: ValidationContext) -> StageResult:
    from kasmina_edge.validate.certify import CertifyInputs, run_checks

    required = ctx.plan.certification.required
    from kasmina_edge.validate.noise_mix import noise_folder

    data = sorted({r.base.parent for r in ctx.records})  # the data this run used: the records' and the noise's
    noise = noise_folder(ctx.plan.robustness.noise_folder)
    if ctx.plan.robustness.noise and noise.is_dir():
        data.append(noise)
    report = run_checks(CertifyInputs(bundle=ctx.bundle_path, keys=ctx.keys, logs=ctx.logs_dir,
                                      sbom_out=ctx.workdir / "sbom.cdx.json", data_folders=data))
    by_id = {c.id: c for c in report.checks}
    unknown = [r for r in required if r not in by_id]
    failures = [f"certification.required names unknown check(s): {', '.join(unknown)}"] if unknown else []
    failures += [f"{c.id}: {c.evidence}" for c in report.checks if c.id in required and c.status == "fail"]
    others = [c.id for c in report.checks if c.id not in required and c.status == "fail"]
    passed = sum(1 for c in report.checks if c.status == "pass")
    skipped = sum(1 for c in report.checks if c.status == "skipped")
    ok = (f"{passed} of {len(report.checks)} checks pass ({skipped} skipped: nothing to check), every required one"
          + (f" (not required, failed: {', '.join(others)})" if others else ""))
    return judged(INDEX, NAME, failures, ok, criteria=ctx.plan.criteria("certification"),
                  metrics={"checks": [c.to_dict() for c in report.checks], "scope": report.scope})
