"""The whole pipeline on a good bundle passes; a planted fault per stage is caught by the stage meant to catch
it, with its one-line reason, and the run stops there unless --keep-going."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import vbundles
from vrun import run_pipeline, stage


def test_a_good_bundle_passes_every_stage(good_bundle: Path, records: Path, plan_file: Path, keys: Path,
                                          tmp_path: Path) -> None:
    run, ctx = run_pipeline(good_bundle, records, plan_file, keys, tmp_path)
    assert run.passed, [(s.name, s.reason) for s in run.stages]
    assert [s.status for s in run.stages] == ["pass"] * 5 + ["skipped", "pass"]
    assert stage(run, "fleet").reason == "not run (needs the fleet issue)"
    acc = stage(run, "accuracy").metrics
    assert acc["device_gross"]["N"]["se"] > 0.95 and acc["device_gross"]["beats"] > 150
    assert set(acc["kernels_forced"]) == {"kernel_s0_emg-denoise_site0", "kernel_s1_lead-adapter_site1"}
    faults = {f["fault"]: f for f in stage(run, "faults").metrics["faults"]}
    assert set(faults) == {"link", "power_cut", "nan_kernel", "corrupted_ota"} and all(f["passed"] for f in faults.values())
    link = faults["link"]["detail"]
    assert link["produced"] > 5 and link["lost"] == 0
    assert link["lost_at_broker"] >= 1 and link["resent"] >= 1  # the broker restart bit; the device sent again
    assert faults["nan_kernel"]["detail"]["rollbacks"] >= 1
    # the emulator's run log (beat classes: patient data) is sealed at rest, and certify saw it so
    assert not (ctx.logs_dir / "device-run.jsonl").exists() and (ctx.logs_dir / "device-run.jsonl.enc").exists()
    cert = {c["id"]: c["status"] for c in stage(run, "certification").metrics["checks"]}
    assert cert["logs-encrypted"] == "pass" and cert["signed"] == "pass" and cert["data-licences"] == "pass"


def test_a_tampered_artifact_is_caught_by_stage_0_and_stops_the_run(good_bundle: Path, records: Path, plan_file: Path,
                                                                    keys: Path, tmp_path: Path) -> None:
    bad = vbundles.tamper(good_bundle, tmp_path / "tampered.kedge", "artifacts/segment_1.onnx")
    run, _ = run_pipeline(bad, records, plan_file, keys, tmp_path / "w")
    s0 = stage(run, "artifacts")
    assert s0.status == "fail" and "segment_1.onnx" in s0.reason and "SHA-256" in s0.reason
    assert all(s.status == "skipped" and "stage 0 (artifacts) failed" in s.reason for s in run.stages[1:])
    assert not run.passed


def test_a_kernel_that_hurts_accuracy_is_caught_by_stage_1(harmful_bundle: Path, records: Path, plan_file: Path,
                                                           keys: Path, tmp_path: Path) -> None:
    run, _ = run_pipeline(harmful_bundle, records, plan_file, keys, tmp_path, keep_going=True,
                          only={"accuracy", "device"})
    assert stage(run, "artifacts").status == "pass"  # it is a well-formed, signed bundle: only accuracy can tell
    s1 = stage(run, "accuracy")
    assert s1.status == "fail"
    assert s1.reason.startswith("kernel kernel_s1_lead-adapter_site1 forced live: gross macro-F1")
    kern = s1.metrics["kernels_forced"]
    assert kern["kernel_s1_lead-adapter_site1"]["drop"] > 0.15 and kern["kernel_s0_emg-denoise_site0"]["drop"] <= 0.02
    assert stage(run, "device").status == "pass"  # --keep-going ran it


def test_a_too_large_arena_is_caught_by_stage_3(fixtures: Path, records: Path, plan_file: Path, keys: Path,
                                                tmp_path: Path) -> None:
    with zipfile.ZipFile(fixtures / "cortex-m-v1.kedge") as z:
        segments = [a["name"] for a in json.loads(z.read("manifest.json"))["artifacts"] if a["kind"] == "segment"]
    arenas = {name: 400_000 for name in segments}  # 3 x 400 kB the device would allocate: over 1 MB of SRAM
    big = vbundles.resign(fixtures / "cortex-m-v1.kedge", tmp_path / "big-arena.kedge", keys,
                          report={"memory": {"arenas": arenas}})
    run, _ = run_pipeline(big, records, plan_file, keys, tmp_path / "w", only={"device"})
    assert stage(run, "artifacts").status == "pass"
    s3 = stage(run, "device")
    assert s3.status == "fail" and s3.reason.startswith("TFLite Micro arena on stm32h743: 1,200,000 B (declared")
    assert any("refuses the bundle" in f and "SRAM" in f for f in s3.failures)
    # the same bundle with arenas that fit passes the stage
    ok = vbundles.resign(fixtures / "cortex-m-v1.kedge", tmp_path / "ok-arena.kedge", keys,
                         report={"memory": {"arenas": dict.fromkeys(segments, 20_000)}})
    run2, _ = run_pipeline(ok, records, plan_file, keys, tmp_path / "w2", only={"device"})
    assert stage(run2, "device").status == "pass", stage(run2, "device").reason


def test_a_link_that_drops_a_burst_is_caught_by_stage_4(good_bundle: Path, records: Path, plan_file: Path, keys: Path,
                                                        tmp_path: Path) -> None:
    run, _ = run_pipeline(good_bundle, records, plan_file, keys, tmp_path, only={"faults"},
                          link="nb-iot:burst@10+2000:1.0")
    s4 = stage(run, "faults")
    assert s4.status == "fail"
    assert "telemetry records never reached the monitor" in s4.reason and "burst@10+2000:1.0" in s4.reason
    link = next(f for f in s4.metrics["faults"] if f["fault"] == "link")
    assert link["detail"]["lost"] == link["detail"]["produced"] > 0
