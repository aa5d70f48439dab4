"""The PTQ tolerance stage on stand-in chains: a kernel is redone with QAT only when PTQ loses too much,
QAT is kept only where it does better, and kernels that pass one by one are judged again together."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from kasmina_edge.compile.chain import ChainLayout
from kasmina_edge.compile.report import BuildReport
from kasmina_edge.compile.stages import ptq_tolerance
from kasmina_edge.compile.stages.chains import ChainPlan
from kasmina_edge.compile.stages.export import ArtifactSet, BuiltArtifact
from kasmina_edge.compile.stages.progress import StepProgress
from kasmina_edge.compile.stages.windows import EvalSet

N = 400
REF = np.random.default_rng(0).normal(size=(N, 5)).astype(np.float32)
SEGMENTS = ("segment_0", "segment_1", "segment_2")


class Chains(ArtifactSet):
    """A chain whose windows flip argmax by the artifacts live in it: ``flips[frozenset(datas)]``."""

    def __init__(self, built: dict[str, BuiltArtifact], flips: dict[frozenset[bytes], int]) -> None:
        super().__init__(built, "tflite-int8", fused=False)
        self.flips = flips

    def run(self, layout: ChainLayout, x: np.ndarray, rr: np.ndarray, trace: dict[str, Any] | None = None) -> np.ndarray:
        k = self.flips.get(frozenset(self.built[n].data for n in layout.active.values()), 0)
        got = REF.copy()
        got[:k] = np.roll(got[:k], 1, axis=1)
        return got


def _job(monkeypatch: pytest.MonkeyPatch, sites: list[int], flips: dict[frozenset[bytes], int]) -> Any:
    from kasmina_edge.compile import chain

    monkeypatch.setattr(chain, "torch_chain", lambda *a, **k: REF)  # the float reference: no flips
    monkeypatch.setattr(ptq_tolerance, "export_qat", lambda spec, *a: f"qat-{spec.name}".encode())
    specs = [SimpleNamespace(name=f"k{s}", kind="kernel", seed_id=f"seed{s}", site=s) for s in sites]
    built = {sp.name: BuiltArtifact(sp, f"ptq-{sp.name}".encode(), "tflite-int8", "PTQ w8a8", 8) for sp in specs}  # type: ignore[arg-type]
    morphed = {s: f"k{s}" for s in sites}
    configs = [("base", ChainLayout(SEGMENTS, {}), {}), ("morphed", ChainLayout(SEGMENTS, morphed),
               {s: f"seed{s}" for s in sites})]  # fmt: skip
    ev = EvalSet("synthetic held-out", np.zeros((N, 1, 8), np.float32), np.zeros((N, 4), np.float32), REF.argmax(1))
    return ptq_tolerance.ToleranceJob(
        model=SimpleNamespace(),  # type: ignore[arg-type]
        specs=specs,  # type: ignore[arg-type]
        artifacts=Chains(built, flips),
        evals=[ev],
        chains=ChainPlan(SEGMENTS, morphed, configs),  # type: ignore[arg-type]
        qat_steps=1,
        progress=StepProgress(None, 0),
    )


def _report() -> BuildReport:
    return BuildReport(target="x86", profile="x86-host", bits=8, format="onnx-qdq")


def test_a_kernel_within_tolerance_stays_ptq(monkeypatch: pytest.MonkeyPatch) -> None:
    job = _job(monkeypatch, [1], {frozenset({b"ptq-k1"}): 1})  # 99.75 % agreement
    report = _report()
    ptq_tolerance.enforce_ptq_tolerance(job, report)
    assert job.artifacts.built["k1"].quantization == "PTQ w8a8" and not report.notes
    assert "QAT 8-bit k1" not in job.progress.timings


def test_a_lossy_kernel_is_rebuilt_with_qat_when_qat_does_better(monkeypatch: pytest.MonkeyPatch) -> None:
    job = _job(monkeypatch, [1], {frozenset({b"ptq-k1"}): 20, frozenset({b"qat-k1"}): 1})  # 95 % → 99.75 %
    report = _report()
    ptq_tolerance.enforce_ptq_tolerance(job, report)
    b = job.artifacts.built["k1"]
    assert (b.data, b.quantization, b.fmt) == (b"qat-k1", "QAT w8a8", "tflite-int8")
    (note,) = report.notes
    assert note.startswith("k1: PTQ lost") and "rebuilt with QAT: agreement 95.00 % → 99.75 %" in note
    assert "QAT 8-bit k1" in job.progress.timings


def test_qat_that_does_worse_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    job = _job(monkeypatch, [1], {frozenset({b"ptq-k1"}): 20, frozenset({b"qat-k1"}): 40})
    report = _report()
    ptq_tolerance.enforce_ptq_tolerance(job, report)
    assert job.artifacts.built["k1"].data == b"ptq-k1"
    assert "QAT tried, PTQ kept (QAT did not do better): agreement 95.00 % → 90.00 %" in report.notes[0]


def test_kernels_that_pass_alone_are_judged_together(monkeypatch: pytest.MonkeyPatch) -> None:
    flips = {
        frozenset({b"ptq-k1"}): 1,
        frozenset({b"ptq-k2"}): 1,
        frozenset({b"ptq-k1", b"ptq-k2"}): 8,  # 98 %: errors add up across the sites
        frozenset({b"qat-k1", b"qat-k2"}): 2,
    }
    job = _job(monkeypatch, [1, 2], flips)
    report = _report()
    ptq_tolerance.enforce_ptq_tolerance(job, report)
    assert {n: b.data for n, b in job.artifacts.built.items()} == {"k1": b"qat-k1", "k2": b"qat-k2"}
    (note,) = report.notes
    assert note.startswith("morphed chain (kernels together) below 99 % agreement; k1, k2: rebuilt with QAT")
    # together and no better: both back to PTQ
    job = _job(monkeypatch, [1, 2], {**flips, frozenset({b"qat-k1", b"qat-k2"}): 8})
    ptq_tolerance.enforce_ptq_tolerance(job, _report())
    assert {b.data for b in job.artifacts.built.values()} == {b"ptq-k1", b"ptq-k2"}
