"""The shipped plan on a real MIT-BIH record with real NSTDB noise (slow: 30 minutes of ECG, 7 noise conditions)."""

from __future__ import annotations

from pathlib import Path

import pytest
from vrun import DATA, stage

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (DATA / "mitdb" / "100.hea").exists() or not (DATA / "nstdb" / "ma.hea").exists(),
                       reason="needs ../shared/data/mitdb/100 and ../shared/data/nstdb"),
]


def test_the_shipped_plan_on_record_100(good_bundle: Path, keys: Path, tmp_path: Path) -> None:
    from kasmina_edge.validate.context import ValidationContext
    from kasmina_edge.validate.pipeline import run_stages
    from kasmina_edge.validate.plan import load_plan
    from kasmina_edge.validate.records import resolve_records

    ctx = ValidationContext(bundle_path=good_bundle, plan=load_plan(), records=resolve_records(
        f"wfdb:{DATA / 'mitdb'}", "100"), workdir=tmp_path, keys=keys)
    run = run_stages(ctx, keep_going=True)
    acc = stage(run, "accuracy").metrics["device_gross"]
    # 30.1 minutes, the first 5 left out: about 1,900 of the record's 2,273 beats; the rule head calls them N
    assert 1800 < acc["beats"] < 2000 and acc["N"]["se"] > 0.99 and acc["qrs_se"] > 0.99
    rob = stage(run, "robustness")
    assert rob.status == "pass" and len(rob.metrics["conditions"]) == 7  # ma, bw x 12/6/0 dB, and lead V5
    assert {"ma 0 dB", "bw 12 dB", "lead V5"} <= {c["condition"] for c in rob.metrics["conditions"]}
    assert stage(run, "device").status == "pass" and stage(run, "faults").status == "pass"
