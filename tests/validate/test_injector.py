"""The event injector's checks can fail: a runtime that never rolls a NaN kernel back, a receiver that takes a
corrupted OTA chunk: each fails stage 4."""

from __future__ import annotations

from pathlib import Path

import pytest
from vrun import run_pipeline, stage


def test_a_nan_kernel_left_in_the_answers_fails_stage_4(good_bundle: Path, records: Path, plan_file: Path,
                                                        keys: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from kasmina_edge.runtime.lifecycle import SeedManager

    monkeypatch.setattr(SeedManager, "on_fault", lambda self, fault: None)  # a breaker that never opens
    run, _ = run_pipeline(good_bundle, records, plan_file, keys, tmp_path, only={"faults"})
    s4 = stage(run, "faults")
    nan = next(f for f in s4.metrics["faults"] if f["fault"] == "nan_kernel")
    assert s4.status == "fail" and not nan["passed"]
    assert "still in the answers" in nan["reason"] and nan["detail"]["rollbacks"] == 0



def test_a_receiver_that_takes_a_corrupted_ota_chunk_fails_stage_4(good_bundle: Path, records: Path, plan_file: Path,
                                                                   keys: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import hashlib

    from firmware_sim.ota import OTA_HEADER, OtaReceiver

    real = OtaReceiver.on_downlink

    def trusting(self, payload: bytes, at: float) -> None:  # type: ignore[no-untyped-def]
        _, _, index = OTA_HEADER.unpack_from(payload)  # a receiver that believes whatever chunk arrives
        if self.offer is not None and 0 <= index < len(self.offer.get("chunk_sha256") or []):
            self.offer["chunk_sha256"][index] = hashlib.sha256(payload[OTA_HEADER.size :]).hexdigest()
        real(self, payload, at)

    monkeypatch.setattr(OtaReceiver, "on_downlink", trusting)
    run, _ = run_pipeline(good_bundle, records, plan_file, keys, tmp_path, only={"faults"})
    ota = next(f for f in stage(run, "faults").metrics["faults"] if f["fault"] == "corrupted_ota")
    assert not ota["passed"] and "was taken without complaint" in ota["reason"]
    assert ota["detail"]["refused_pieces"] == 0 and ota["detail"]["status"] == "refused"  # the whole-file hash caught it
