"""Stage 9, accuracy and parity: each chain (base, morphed) on each evaluation set against torch: macro-F1
both ways, argmax agreement, logit error against its bound. A missed bound is recorded (the default) or
stops the build (``strict``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from kasmina_edge.compile.report import AccuracyRow

if TYPE_CHECKING:
    from kasmina_edge.compile.report import BuildReport
    from kasmina_edge.compile.split import SegmentedModel
    from kasmina_edge.compile.stages.windows import EvalSet

# macro-F1 is also given over the classes with at least this many beats: MIT-BIH 100 has one V beat,
# and one beat more or less right moves its macro-F1 by ~10 points
COMMON_CLASS_BEATS = 10


@dataclass(frozen=True)
class ParityMiss:
    record: dict[str, Any]  # chain, dataset and the parity figures: what the manifest keeps
    warning: str  # one line for the user


def judge_accuracy(
    report: BuildReport,
    model: SegmentedModel,
    evals: list[EvalSet],
    configs: list[tuple[str, Any, dict[int, str]]],
    run_chain: Callable[..., np.ndarray],
    band: tuple[float, ...],
    *,
    strict: bool = False,
) -> list[ParityMiss]:
    """Fill the accuracy rows; return the missed parity bounds (strict: raise at the first)."""
    from kasmina_edge.compile.chain import torch_chain
    from kasmina_edge.compile.parity import compare_logits, macro_f1, parity_warning, require_parity

    misses: list[ParityMiss] = []
    for ev in evals:
        for cname, layout, active in configs:
            ref = torch_chain(model, ev.windows, ev.rr, active)
            got = run_chain(layout, ev.windows, ev.rr)
            par = compare_logits(ref, got, clip=(band[0], band[1]))
            report.accuracy.append(
                AccuracyRow(
                    dataset=ev.name,
                    configuration=cname,
                    windows=int(ev.windows.shape[0]),
                    fp32_macro_f1=macro_f1(ev.labels, ref),
                    quant_macro_f1=macro_f1(ev.labels, got),
                    fp32_macro_f1_common=macro_f1(ev.labels, ref, min_support=COMMON_CLASS_BEATS),
                    quant_macro_f1_common=macro_f1(ev.labels, got, min_support=COMMON_CLASS_BEATS),
                    class_support=[int((ev.labels == k).sum()) for k in range(len(model.classes))],
                    argmax_agreement=par.argmax_agreement,
                    p99_logit_error=par.p99_abs_error,
                    logit_bound=par.bound,
                )
            )
            if par.ok:
                continue
            what = f"{report.target} chain ({cname}) on {ev.name}"
            if strict:
                require_parity(par, what)
            report.notes.append(f"PARITY BOUND MISSED: {what}: {par.summary()}")
            record = {"chain": cname, "dataset": ev.name, **par.to_dict()}
            misses.append(ParityMiss(record, parity_warning(par, what)))
    return misses


def parity_record(misses: list[ParityMiss]) -> dict[str, Any]:
    """The manifest's record of the parity check: the bounds, and every one this bundle missed."""
    from kasmina_edge.compile.parity import LOGIT_ERROR_FRACTION, MIN_ARGMAX_AGREEMENT

    return {
        "ok": not misses,
        "min_argmax_agreement": MIN_ARGMAX_AGREEMENT,
        "logit_error_fraction": LOGIT_ERROR_FRACTION,
        "missed": [dict(m.record) for m in misses],
    }
