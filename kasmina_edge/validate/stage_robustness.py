"""Stage 2, robustness: the same records with real noise (NSTDB ``ma``/``bw`` or a folder the plan names) mixed
in at the plan's SNRs, and on their second lead. The device as deployed (seeds free to come in) is judged
against the base alone on the same signal: it may never be worse by more than ``max_seed_loss`` of macro-F1."""

from __future__ import annotations

import zlib
from typing import Any

from kasmina_edge.ecg.evaluate import Evaluation, gross
from kasmina_edge.ecg.types import Record
from kasmina_edge.validate.context import ValidationContext
from kasmina_edge.validate.device_run import BASE_ONLY, stream_record
from kasmina_edge.validate.noise_mix import mix, noise_folder, read_noise
from kasmina_edge.validate.result import StageResult, judged
from kasmina_edge.validate.stage_accuracy import pct

INDEX, NAME = 2, "robustness"


def _conditions(ctx: ValidationContext, rec: Record) -> list[tuple[str, Record, int]]:
    """(condition name, the record under it, the lead to stream)."""
    p = ctx.plan.robustness
    folder = str(noise_folder(p.noise_folder))
    out: list[tuple[str, Record, int]] = []
    for name in p.noise:
        noise = read_noise(folder, name, float(rec.fs))
        for snr in p.snr_db:
            seed = zlib.crc32(f"{rec.name}/{name}/{snr}".encode())
            noisy = mix(rec, noise, name, snr, seed, first_clean_s=p.first_clean_s, stretch_s=p.stretch_s)
            out.append((f"{name} {snr:g} dB", noisy, 0))
    if p.lead_change and rec.signal.shape[1] > 1:
        out.append((f"lead {rec.lead_names[1]}", rec, 1))
    return out


def run(ctx: ValidationContext) -> StageResult:
    assert ctx.image is not None
    p, exclude = ctx.plan.robustness, ctx.plan.accuracy.exclude_first_s
    per: dict[str, tuple[list[Evaluation], list[Evaluation]]] = {}
    skipped_lead: list[str] = []
    for ref in ctx.records:
        rec = ctx.record(ref)
        conds = _conditions(ctx, rec)
        if p.lead_change and rec.signal.shape[1] < 2:
            skipped_lead.append(ref.name)
        ctx.say(f"robustness: {ref.name}, {len(conds)} condition(s), base and device")
        for cname, crec, lead in conds:
            b = stream_record(ctx.image, crec, config=BASE_ONLY, lead=lead).evaluate(crec, exclude)
            d = stream_record(ctx.image, crec, lead=lead).evaluate(crec, exclude)
            per.setdefault(cname, ([], []))
            per[cname][0].append(b)
            per[cname][1].append(d)
    failures: list[str] = []
    rows: list[dict[str, Any]] = []
    for cname, (bs, ds) in per.items():
        gb, gd = gross(bs), gross(ds)
        loss = gb.macro_f1() - gd.macro_f1()
        rows.append({"condition": cname, "base_macro_f1": gb.macro_f1(), "device_macro_f1": gd.macro_f1(),
                     "base_qrs_se": gb.beat_se, "device_qrs_se": gd.beat_se, "loss": loss})
        if not loss <= p.max_seed_loss:
            failures.append(f"{cname}: base + seeds macro-F1 {pct(gd.macro_f1())} is below the base alone "
                            f"{pct(gb.macro_f1())} by {100 * loss:.1f} points (> {100 * p.max_seed_loss:.1f})")
    ctx.figures["robustness"] = rows
    notes = [f"{', '.join(skipped_lead)}: one lead only, no lead change"] if skipped_lead else []
    worst = max(rows, key=lambda r: r["loss"], default=None)
    ok = (f"{len(rows)} condition(s): seeds never worse than the base alone"
          + (f" (closest: {worst['condition']}, {100 * worst['loss']:+.1f} points)" if worst else ""))
    return judged(INDEX, NAME, failures, ok, criteria=ctx.plan.criteria("robustness"),
                  metrics={"conditions": rows, "notes": notes})
