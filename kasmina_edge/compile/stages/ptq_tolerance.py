"""Stage 8, PTQ tolerance: an 8-bit kernel that loses too much under PTQ (macro-F1 on the held-out set,
or argmax agreement with torch on any evaluation set) is redone with Brevitas QAT; QAT is kept only
where it does better. Then the kernels active together get the same judgement: errors that pass one by
one can add up across sites."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from kasmina_edge.compile.stages.export import BuiltArtifact, export_qat
from kasmina_edge.core.formats import TFLITE_FORMATS

if TYPE_CHECKING:
    from kasmina_edge.compile.chain import ChainLayout
    from kasmina_edge.compile.report import BuildReport
    from kasmina_edge.compile.split import ArtifactSpec, SegmentedModel
    from kasmina_edge.compile.stages.chains import ChainPlan
    from kasmina_edge.compile.stages.export import ArtifactSet
    from kasmina_edge.compile.stages.progress import StepProgress
    from kasmina_edge.compile.stages.windows import EvalSet

PTQ_TOLERANCE_POINTS = 1.0  # an 8-bit kernel whose PTQ loses more macro-F1 than this is redone with QAT
PTQ_MIN_AGREEMENT = 0.99  # ... or whose chain agrees with torch on fewer windows than this

Judgement = tuple[float, float]  # (macro-F1 points lost on the held-out set, lowest argmax agreement)


@dataclass
class ToleranceJob:
    """What the stage judges: the kernels exported (``artifacts.built`` is updated in place), the chains
    they run in, the windows, and the QAT budget; ``progress`` gets one step per QAT run."""

    model: SegmentedModel
    specs: list[ArtifactSpec]
    artifacts: ArtifactSet
    evals: list[EvalSet]
    chains: ChainPlan
    qat_steps: int
    progress: StepProgress

    def judged(self, layout: ChainLayout, active: dict[int, str]) -> Judgement:
        """The F1 loss is judged on the held-out synthetic set; agreement on every evaluation set
        (MIT-BIH 100 too), as the parity check after this step judges it."""
        from kasmina_edge.compile.chain import torch_chain
        from kasmina_edge.compile.parity import macro_f1

        lost, agree = 0.0, 1.0
        for i, ev in enumerate(self.evals):
            ref_logits = torch_chain(self.model, ev.windows, ev.rr, active)
            got_logits = self.artifacts.run(layout, ev.windows, ev.rr)
            if i == 0:
                lost = 100.0 * (macro_f1(ev.labels, ref_logits) - macro_f1(ev.labels, got_logits))
            agree = min(agree, float((ref_logits.argmax(1) == got_logits.argmax(1)).mean()))
        return lost, agree

    def qat(self, spec: ArtifactSpec) -> BuiltArtifact:
        fmt = self.artifacts.fmt
        self.progress.grow(1)
        with self.progress.step(f"QAT 8-bit {spec.name}"):
            data = export_qat(spec, fmt, 8, self.model, self.qat_steps)
        return BuiltArtifact(spec, data, fmt if fmt in TFLITE_FORMATS else "onnx-qcdq", "QAT w8a8", 8)


def enforce_ptq_tolerance(job: ToleranceJob, report: BuildReport) -> None:
    """Redo with QAT each 8-bit kernel that loses too much under PTQ, one by one, then together."""
    kernels = [s for s in job.specs if s.kind == "kernel" and s.seed_id is not None and s.site is not None]
    for spec in kernels:
        _one_kernel(job, spec, report)
    _kernels_together(job, kernels, report)


def _better(before: Judgement, after: Judgement) -> bool:
    # QAT is kept only where it helps: higher agreement, or as high with less macro-F1 lost
    return after[1] > before[1] or (after[1] == before[1] and after[0] < before[0])


def _verdict(kept: bool, before: Judgement, after: Judgement) -> str:
    return (f"{'rebuilt with QAT' if kept else 'QAT tried, PTQ kept (QAT did not do better)'}: agreement "
            f"{100 * before[1]:.2f} % → {100 * after[1]:.2f} %, macro-F1 lost {before[0]:.2f} → {after[0]:.2f}")  # fmt: skip


def _one_kernel(job: ToleranceJob, spec: ArtifactSpec, report: BuildReport) -> None:
    from kasmina_edge.compile.chain import ChainLayout

    assert spec.site is not None and spec.seed_id is not None
    built = job.artifacts.built
    alone = (ChainLayout(job.chains.segments, {spec.site: spec.name}), {spec.site: spec.seed_id})
    before = job.judged(*alone)
    if before[0] <= PTQ_TOLERANCE_POINTS and before[1] >= PTQ_MIN_AGREEMENT:
        return
    ptq, built[spec.name] = built[spec.name], job.qat(spec)
    after = job.judged(*alone)
    kept = _better(before, after)
    if not kept:
        built[spec.name] = ptq
    report.notes.append(
        f"{spec.name}: PTQ lost {before[0]:.2f} macro-F1 points (limit {PTQ_TOLERANCE_POINTS}) with argmax "
        f"agreement {100 * before[1]:.2f} % (limit {100 * PTQ_MIN_AGREEMENT:.0f} %); {_verdict(kept, before, after)}"
    )


def _kernels_together(job: ToleranceJob, kernels: list[ArtifactSpec], report: BuildReport) -> None:
    """If the morphed layout (the last configuration) still falls below the agreement limit, the
    kernels in it that are still PTQ are redone with QAT together."""
    built = job.artifacts.built
    _, layout, active = job.chains.configs[-1]
    in_chain = set(layout.active.values())
    still_ptq = [s for s in kernels if s.name in in_chain and built[s.name].quantization.startswith("PTQ")]
    if len(in_chain) < 2 or not still_ptq:
        return
    before = job.judged(layout, active)
    if before[1] >= PTQ_MIN_AGREEMENT:
        return
    ptqs = {s.name: built[s.name] for s in still_ptq}
    for spec in still_ptq:
        built[spec.name] = job.qat(spec)
    after = job.judged(layout, active)
    kept = _better(before, after)
    if not kept:
        built.update(ptqs)
    report.notes.append(
        f"morphed chain (kernels together) below {100 * PTQ_MIN_AGREEMENT:.0f} % agreement; "
        f"{', '.join(ptqs)}: {_verdict(kept, before, after)}"
    )
