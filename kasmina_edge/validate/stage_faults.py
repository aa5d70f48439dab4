"""Stage 4, network and faults: the event injector (``injector``) while the emulated device streams the first
record: link faults from the plan (loss burst, latency spike, broker restart) and the link's own, a power cut
during flash, a NaN kernel, a corrupted OTA chunk. Nothing lost, rollback within the plan's windows, telemetry
complete."""

from __future__ import annotations

from kasmina_edge.validate import injector
from kasmina_edge.validate.context import ValidationContext
from kasmina_edge.validate.result import StageResult, judged

INDEX, NAME = 4, "faults"
STREAM_S = 180.0  # of the first record, for the link faults (the plan's event times are seconds into it)


def link_spec(ctx: ValidationContext) -> str:
    """The link as ``NAME:FAULTS``: --link (or the plan's), its own faults and the plan's events."""
    spec = ctx.link or ctx.plan.faults.link
    name, _, own = spec.partition(":")
    faults = [f for f in [*own.split(","), *ctx.plan.faults.events] if f.strip()]
    return f"{name}:{','.join(faults)}" if faults else name


def run(ctx: ValidationContext) -> StageResult:
    from kasmina_edge.ecg.records import crop

    p = ctx.plan.faults
    rec = ctx.record(ctx.records[0])
    stream = crop(rec, 0.0, min(STREAM_S, rec.seconds))
    outcomes = []
    ctx.say(f"faults: link {link_spec(ctx)}")
    outcomes.append(injector.link_faults(ctx, stream, link_spec(ctx)))
    if p.power_cut_during_flash:
        ctx.say("faults: power cut during flash")
        outcomes.append(injector.power_cut_during_flash(ctx))
    if p.nan_kernel:
        ctx.say("faults: NaN kernel")
        outcomes.append(injector.nan_kernel(ctx, stream))
    if p.corrupted_ota_chunk:
        ctx.say("faults: corrupted OTA chunk")
        outcomes.append(injector.corrupted_ota_chunk(ctx, link_spec(ctx).partition(":")[0]))
    ctx.figures["faults"] = [o.to_dict() for o in outcomes]
    failures = [o.reason for o in outcomes if not o.passed]
    ok = "; ".join(o.reason for o in outcomes)
    return judged(INDEX, NAME, failures, ok, criteria={**ctx.plan.criteria("faults"), "link": link_spec(ctx)},
                  metrics={"faults": [o.to_dict() for o in outcomes]})
