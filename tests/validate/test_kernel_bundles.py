"""validate --kernels: a patient's kernel-only bundle installed on the base; its kernels judged live together."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from vrun import stage

sys.path.append(str(Path(__file__).resolve().parent.parent / "firmware_sim"))

from seed_fixtures import SEED_KERNEL, seed_bundle  # noqa: E402


def _run(good_bundle: Path, records: Path, plan_file: Path, keys: Path, work: Path, kernels: list[Path]):  # type: ignore[no-untyped-def]
    from kasmina_edge.validate.context import ValidationContext
    from kasmina_edge.validate.pipeline import run_stages
    from kasmina_edge.validate.plan import load_plan
    from kasmina_edge.validate.records import resolve_records

    ctx = ValidationContext(bundle_path=good_bundle, plan=load_plan(plan_file), records=resolve_records(f"wfdb:{records}"),
                            workdir=work, keys=keys, kernel_paths=kernels)
    return run_stages(ctx, keep_going=True, only={"accuracy", "device"})


@pytest.mark.parametrize(("shift", "passes"), [(0.2, True), (10.0, False)])
def test_a_patient_seed_is_judged_on_the_base(good_bundle: Path, records: Path, plan_file: Path, keys: Path,
                                              tmp_path: Path, shift: float, passes: bool) -> None:
    seed = seed_bundle(good_bundle, keys, tmp_path / "seed.kedge", shift=shift)
    run = _run(good_bundle, records, plan_file, keys, tmp_path / "w", [seed])
    s0 = stage(run, "artifacts")
    assert s0.status == "pass" and s0.metrics["kernel_bundles"][0]["kernels"] == [SEED_KERNEL]
    s1 = stage(run, "accuracy")
    group = next(v for k, v in s1.metrics["kernels_forced"].items() if v["kernels"] == [SEED_KERNEL])
    assert (s1.status == "pass") == passes, s1.reason
    if not passes:  # +10 on channel 0 lifts site 1's mean over the head's threshold: every beat becomes V
        assert group["drop"] > 0.15 and f"({SEED_KERNEL}) forced live" in s1.reason
    assert stage(run, "device").status == "pass"  # the emulator took it into its kernel store and ran it


def test_a_base_bundle_given_as_kernels_fails_stage_0(good_bundle: Path, records: Path, plan_file: Path, keys: Path,
                                                      tmp_path: Path) -> None:
    run = _run(good_bundle, records, plan_file, keys, tmp_path / "w", [good_bundle])
    s0 = stage(run, "artifacts")
    assert s0.status == "fail" and "a full bundle, not a kernel-only one" in s0.reason

