"""Stage 2 judges the device against the base alone on the same noisy signal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from vrun import run_pipeline, stage

from kasmina_edge.validate import stage_robustness
from kasmina_edge.validate.device_run import BASE_ONLY, stream_record


def test_a_device_worse_than_its_base_in_noise_fails_stage_2(harmful_bundle: Path, records: Path, plan_file: Path,
                                                             keys: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # the runtime's own breakers cull a harmful seed within windows (health_drift); here the device keeps the
    # harmful kernel live, as a runtime without them would: the stage must see it
    def device_keeps_it(image: Any, record: Any, *, config: Any = None, lead: int = 0, **kw: Any) -> Any:
        if config is BASE_ONLY:
            return stream_record(image, record, config=config, lead=lead, **kw)
        return stream_record(image, record, forced=["kernel_s1_lead-adapter_site1"], lead=lead)

    monkeypatch.setattr(stage_robustness, "stream_record", device_keeps_it)
    run, _ = run_pipeline(harmful_bundle, records, plan_file, keys, tmp_path, only={"robustness"})
    s2 = stage(run, "robustness")
    assert s2.status == "fail" and "base + seeds macro-F1" in s2.reason and "is below the base alone" in s2.reason
    assert s2.metrics["conditions"] and all(c["loss"] > 0.02 for c in s2.metrics["conditions"])


def test_the_real_runtime_keeps_a_harmful_kernel_out_of_the_answers(harmful_bundle: Path, records: Path,
                                                                    plan_file: Path, keys: Path, tmp_path: Path) -> None:
    run, _ = run_pipeline(harmful_bundle, records, plan_file, keys, tmp_path, only={"robustness"})
    s2 = stage(run, "robustness")  # the kernel that ruins accuracy when forced (stage 1) never goes live here
    assert s2.status == "pass" and all(abs(c["loss"]) < 1e-9 for c in s2.metrics["conditions"])
