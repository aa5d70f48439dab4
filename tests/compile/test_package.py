"""The package stage's pure parts: a kernel-only bundle, side files, a seed's record in manifest terms."""

from __future__ import annotations

import hashlib
from types import SimpleNamespace

from kasmina_edge.compile.stages.package import _seed_kernel_info, add_side_files, kernels_only


def _manifest() -> dict:  # type: ignore[type-arg]
    return {
        "kind": "full",
        "chain": {"segments": ["segment_0", "segment_1"], "default_active": {"0": "kernel_s0_a"}},
        "artifacts": [
            {"name": "segment_0", "kind": "segment", "file": "artifacts/segment_0.tflite", "reference": "reference/segment_0.npz"},
            {"name": "kernel_s0_a", "kind": "kernel", "file": "artifacts/kernel_s0_a.tflite.p4", "reference": "reference/kernel_s0_a.npz"},
            {"name": "segment_1", "kind": "segment", "file": "artifacts/segment_1.tflite", "reference": "reference/segment_1.npz"},
        ],
        "parity": {"ok": True},
    }  # fmt: skip


def test_kernels_only_keeps_the_kernels_and_their_reference_vectors() -> None:
    manifest = _manifest()
    files = {a[k]: k.encode() for a in manifest["artifacts"] for k in ("file", "reference")}
    files["firmware/model_data.cc"] = b"c"
    kept_files, kept = kernels_only(files, manifest)
    assert set(kept_files) == {"artifacts/kernel_s0_a.tflite.p4", "reference/kernel_s0_a.npz"}
    assert kept["kind"] == "kernels" and kept["chain"] is None and kept["parity"] == {"ok": True}
    assert [a["name"] for a in kept["artifacts"]] == ["kernel_s0_a"]
    assert manifest["kind"] == "full" and len(manifest["artifacts"]) == 3  # the full manifest is left as it was


def test_side_files_are_artifacts_of_their_own_kind_in_path_order() -> None:
    manifest, files = _manifest(), {}
    add_side_files(manifest, files, {"firmware/model_data.h": b"h", "edgetpu/segment_0_edgetpu.tflite": b"tpu",
                                     "firmware/model_data.cc": b"cc"})  # fmt: skip
    side = manifest["artifacts"][3:]
    assert [a["name"] for a in side] == [
        "edgetpu/segment_0_edgetpu.tflite", "firmware/model_data.cc", "firmware/model_data.h"
    ]  # fmt: skip
    assert [(a["kind"], a["format"]) for a in side] == [
        ("whole", "tflite-edgetpu"), ("c_array", "c-source"), ("c_array", "c-source")
    ]  # fmt: skip
    assert all(a["sha256"] == hashlib.sha256(files[a["file"]]).hexdigest() for a in side)


def test_a_seed_record_keeps_transitions_and_the_passed_g1_verdict() -> None:
    entry = SimpleNamespace(
        blueprint="bottleneck_adapter", condition="noise", tags=["ma"], param_count=321, gain=0.042,
        lifecycle=[
            {"event": "transition", "from": "DORMANT", "to": "GERMINATED", "reason": "asked"},
            {"event": "gate", "gate": "G0"},  # not a transition: left out
            {"event": "transition", "from": "GERMINATED", "to": "TRAINING", "reason": "g1", "gate": "G1",
             "gate_passed": True, "gate_reason": "ok", "gate_metrics": {"loss": 0.5, "note": "text", "n": 3}},
        ],
    )  # fmt: skip
    info = _seed_kernel_info(entry, bits=4)
    assert info["condition_tags"] == ["noise", "ma"] and info["bits"] == 4 and info["measured_gain"] == 0.042
    assert [(s["src"], s["dst"]) for s in info["lifecycle"]] == [("DORMANT", "GERMINATED"), ("GERMINATED", "TRAINING")]
    assert info["lifecycle"][0]["gate"] is None
    assert info["g1_verdict"] == {"gate": "G1", "passed": True, "reason": "ok", "metrics": {"loss": 0.5, "n": 3.0}}
    entry.lifecycle[2]["gate_passed"] = False  # a failed G1 is recorded on its step, but is no verdict
    assert _seed_kernel_info(entry, bits=8)["g1_verdict"] is None
