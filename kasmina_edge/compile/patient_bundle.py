"""A patient's seeds as a kernel-only bundle for the base already on a device.

The kernels must hand on int8 values in the grids the device's base bundle uses at each site, so the
build runs with the base's own site and logit grids (read from its bundle, or calibrated exactly as
``kasmina-edge build`` calibrates a base built without seeds) and checks the kernels in the chain of the
base bundle's own segments.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console


def base_grids(
    checkpoint: Path, target: str, base_bundle: Path | None, keys: Path | None, *, headroom: float | None = None
) -> tuple[dict[int, Any], Any]:
    """The site and logit grids of the base on the device: read from its bundle, or calibrated exactly as
    ``kasmina-edge build`` calibrates a base built without seeds (``headroom``: its site head-room, by
    default the build's). A bundle of another base or target is refused in one line."""
    import hashlib

    import numpy as np
    import torch

    from kasmina_edge.compile.pipeline import BuildRequest, load_data, load_segmented
    from kasmina_edge.compile.quantize import QuantGrid
    from kasmina_edge.compile.split import calibrate_logit_grid, calibrate_site_grids
    from kasmina_edge.contracts.errors import KasminaError

    if base_bundle is not None:
        from kasmina_edge.contracts.bundle import read_bundle
        from kasmina_edge.core.kernel_fit import misfit

        m = read_bundle(base_bundle, keys).manifest
        ours = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
        problem = misfit(m, checkpoint_sha256=ours, target=target, device=f"--base-bundle {base_bundle}")
        if problem is not None:  # the device's own rule for the kernels this will build
            raise KasminaError(f"--checkpoint {checkpoint}, --target {target}: {problem}")
        grids = {s.index: QuantGrid(float(s.grid["scale"]), int(s.grid["zero_point"])) for s in m.sites}
        logits = (getattr(m, "logits", None) or {}).get("grid") or {}
        logit = QuantGrid(float(logits["scale"]), int(logits["zero_point"])) if logits else None
        return grids, logit
    model, _ckpt, _ = load_segmented(checkpoint, None)
    calib, _ = load_data(BuildRequest(checkpoint=checkpoint, seeds=None, target=target))
    xc = torch.from_numpy(np.ascontiguousarray(calib.windows, np.float32))
    rc = torch.from_numpy(np.ascontiguousarray(calib.rr, np.float32))
    room = BuildRequest(checkpoint=checkpoint, seeds=None, target=target).site_headroom
    room = room if headroom is None else headroom
    return calibrate_site_grids(model, xc, rc, headroom=room), calibrate_logit_grid(model, xc, rc)


def device_site_ranges(
    checkpoint: Path, target: str, base_bundle: Path | None, keys: Path | None, site_names: list[str]
) -> dict[str, tuple[float, float]]:
    """(low, high) each site's int8 grid holds on the device: the base bundle's, or the build's calibration."""
    from kasmina_edge.compile.split import grid_ranges

    grids, _ = base_grids(checkpoint, target, base_bundle, keys)
    return {site_names[j]: (float(lo), float(hi)) for j, (lo, hi) in grid_ranges(grids).items()}


def patient_bundle(
    seed: Any,
    *,
    checkpoint: Path,
    out: Path,
    target: str,
    keys: Path | None = None,
    base_bundle: Path | None = None,
    con: Console | None = None,
    beats: Any = None,
) -> Any:
    """The patient's seeds as a signed kernel-only bundle for the base on the device (the build's own
    pipeline, site grids forced to the base's); the manifest's ``patient`` block says what the host
    decided (culled seeds travel marked CULLED: the device does not bring them live).

    ``beats``: the patient's beats as the kernels see them (RR scale applied, e.g. the adaptation set):
    the kernels' int8 grids are calibrated on them and their parity judged on them, in the chain of the
    base bundle's own segments (``base_bundle``) saturating at its grids, as the device runs it. The device
    saturates every site at the base's grid: a seed grown without those ranges (``seed.ranges`` wider)
    is bundled with a warning and the sites named in the patient block (``saturates_at``)."""
    import tempfile

    from kasmina_edge.compile.pipeline import BuildRequest, EvalSet, build
    from kasmina_edge.compile.split import grid_ranges, ranges_beyond
    from kasmina_edge.contracts.errors import KasminaError
    from kasmina_edge.host.experiment import load_checkpoint
    from kasmina_edge.host.model import ModelConfig
    from kasmina_edge.host.patient import library_entries
    from kasmina_edge.host.seed_library import SeedLibrary

    entries = library_entries(seed)
    if not entries:
        raise KasminaError(f"patient {seed.record}: no seed to bundle ({seed.outcome})")
    grids, logit = base_grids(checkpoint, target, base_bundle, keys)
    names = ModelConfig.from_dict(load_checkpoint(checkpoint)["model_config"]).site_names
    device_ranges = {names[j]: r for j, r in grid_ranges(grids).items()}
    saturates = ranges_beyond(dict(getattr(seed, "ranges", None) or {}), device_ranges)
    if saturates and con is not None:
        con.print(
            f"[yellow]warning:[/] the seed grew without the device's site ranges ({', '.join(saturates)}): on the "
            f"device its activations saturate there and its int8 result can differ from the host's"
        )
    patient_block = {
        "record": seed.record, "minutes": seed.minutes, "outcome": seed.outcome, "fossilized": seed.fossilized,
        "rr_scale": [float(v) for v in seed.rr_scale], "param_count": seed.param_count,
        "param_fraction": seed.param_fraction, "baseline_val_macro_f1": seed.baseline_val,
        "seed_val_macro_f1": seed.seed_val, "gain": seed.gain,
        "seeds": {f"patient-{seed.record}@{g.plan.site}": g.final_stage for g in seed.seeds if g.state is not None},
        "site_ranges": {k: [lo, hi] for k, (lo, hi) in device_ranges.items()},
        "saturates_at": {k: list(v) for k, v in saturates.items()},
    }  # fmt: skip
    kernel_beats = None
    if beats is not None and len(beats):
        kernel_beats = EvalSet(f"patient {seed.record}", beats.windows, beats.rr, beats.labels)
    base_segments = None
    if base_bundle is not None:  # the kernels are checked in the chain the device runs
        from kasmina_edge.contracts.bundle import read_bundle
        from kasmina_edge.core.pack4 import artifact_payload

        b = read_bundle(base_bundle, keys)
        base_segments = {e.name: artifact_payload(b, e) for e in b.manifest.artifacts if e.kind == "segment"}
    with tempfile.TemporaryDirectory(prefix="kasmina-patient-") as tmp:
        lib = SeedLibrary(meta={"kind": "patient", "record": seed.record, "target": target})
        for entry, state in entries:
            lib.add(entry, state)
        lib.save(Path(tmp))
        req = BuildRequest(
            checkpoint=checkpoint, seeds=Path(tmp), target=target, out=out, keys=keys, site_grids=grids,
            logit_grid=logit, kernels_only=True, manifest_extra={"patient": patient_block}, strict=False,
            kernel_beats=kernel_beats, base_segments=base_segments,
        )  # fmt: skip
        return build(req, con)
