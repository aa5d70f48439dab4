"""Stage 2, lower: the checkpoint as export-ready torch modules cut at its seed sites (live site seeds
folded into the segment before, RR standardisation folded into fc1), plus the seed library's kernels."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kasmina_edge.compile.split import SegmentedModel
    from kasmina_edge.compile.stages.request import BuildRequest
    from kasmina_edge.host.seed_library import LibraryEntry


@dataclass
class Lowered:
    model: SegmentedModel
    checkpoint: dict[str, Any]  # the checkpoint's metadata (model_config, experiment_id, state)
    entries: list[LibraryEntry]  # the library's entries, in the order of the model's kernels


def lower(req: BuildRequest) -> Lowered:
    model, ckpt, entries = load_segmented(req.checkpoint, req.seeds)
    return Lowered(model, ckpt, entries)


def load_segmented(checkpoint: Path, seeds: Path | None) -> tuple[SegmentedModel, dict[str, Any], list[Any]]:
    """The base model split at its sites (live site seeds folded into the segment before), plus the
    library's kernels; returns (model, checkpoint metadata, library entries)."""
    import torch

    from kasmina_edge.compile.rewrite import check_equivalent, fold_rr_normalisation, has_rr_normalisation
    from kasmina_edge.compile.split import SegmentedModel, Site
    from kasmina_edge.ecg.types import AAMI_CLASSES
    from kasmina_edge.host.train import load_base

    model, ckpt = load_base(checkpoint)
    cfg = model.config
    shapes = cfg.site_shapes()
    modules: list[torch.nn.Module] = []
    for seg in model.segments():
        mod = seg.module
        if seg.site_after is not None:
            view: Any = model.sites[seg.site_after]
            view = view.export_view() if hasattr(view, "export_view") else view
            if not getattr(view, "is_identity", isinstance(view, torch.nn.Identity)):
                mod = torch.nn.Sequential(mod, view)  # a fossilized seed is part of the base now
        modules.append(mod)
    if has_rr_normalisation(modules[-1]):
        c_last, l_last = shapes[cfg.site_names[-1]]
        folded = fold_rr_normalisation(modules[-1], l_last)
        g = torch.Generator().manual_seed(0)
        act = torch.rand(16, c_last, l_last, generator=g)
        rr = torch.rand(16, cfg.n_rr, generator=g) + 0.5
        check_equivalent(modules[-1], folded, act, rr, what="head (RR standardisation folded into fc1)")
        modules[-1] = folded
    sites = [Site(i, name, shapes[name][0], shapes[name][1]) for i, name in enumerate(cfg.site_names)]
    kernels, entries = _library_kernels(seeds) if seeds is not None else ([], [])
    sm = SegmentedModel(
        modules, sites, kernels, window=cfg.window, rr_features=cfg.n_rr, classes=tuple(AAMI_CLASSES)
    )
    return sm, ckpt, entries


def _library_kernels(seeds: Path) -> tuple[list[Any], list[Any]]:
    """The library's seeds as split kernels (weights loaded), and its entries in the same order."""
    from kasmina_edge.compile.split import SeedKernel
    from kasmina_edge.host.seed_library import SeedLibrary

    lib = SeedLibrary.load(seeds)
    kernels: list[SeedKernel] = []
    entries: list[Any] = []
    for key, e in lib.entries.items():
        kernels.append(
            SeedKernel(
                seed_id=key,
                site=e.site_index,
                blueprint=e.blueprint,
                module=lib.seed_module(key),
                meta={"condition": e.condition, "gain": e.gain, "stage": e.final_stage, "seed_id": e.seed_id},
            )
        )
        entries.append(e)
    return kernels, entries
