"""The target checks stage where no toolchain runs: the artifacts against the profile's storage."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from kasmina_edge.compile.report import BuildReport
from kasmina_edge.compile.stages.export import ArtifactSet, BuiltArtifact
from kasmina_edge.compile.stages.target_checks import check_target
from kasmina_edge.compile.stages.windows import EvalSet
from kasmina_edge.core.build_errors import ProfileLimitError

X86 = SimpleNamespace(name="x86", runtime="onnxruntime")
EV = EvalSet("x", np.zeros((4, 1, 8), np.float32), np.zeros((4, 4), np.float32), np.zeros(4, np.int64))


def _profile(flash: int) -> SimpleNamespace:
    return SimpleNamespace(name="small-box", memory=SimpleNamespace(flash_bytes=flash, sram_bytes=0))


def _arts() -> ArtifactSet:
    sizes = {"segment_0": 60, "kernel_s0_a": 20, "segment_1": 30}
    spec = SimpleNamespace(kind="segment")
    built = {n: BuiltArtifact(spec, b"x" * s, "onnx-qdq", "PTQ w7a8", 8) for n, s in sizes.items()}  # type: ignore[arg-type]
    return ArtifactSet(built, "onnx-qdq", fused=True)


def _report() -> BuildReport:
    return BuildReport(target="x86", profile="small-box", bits=8, format="onnx-qdq")


def test_artifacts_over_the_storage_name_the_largest() -> None:
    with pytest.raises(
        ProfileLimitError,
        match=r"^model too big for small-box: artifacts need 110 B, its storage is 100 B "
        r"\(largest artifact: segment_0, 60 B\)$",
    ):
        check_target(_report(), X86, _profile(100), _arts(), EV, ("segment_0", "segment_1"))


@pytest.mark.parametrize("flash", [110, 0])  # exactly full; 0: the profile sets no limit
def test_artifacts_within_the_storage_are_recorded(flash: int) -> None:
    report = _report()
    files = check_target(report, X86, _profile(flash), _arts(), EV, ("segment_0", "segment_1"))
    assert files == {} and report.memory == {"artifact_bytes": 110, "storage_limit": flash}
    assert not report.notes and not report.target_mapping
