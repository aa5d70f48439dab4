"""Stage 7, chains: the layouts the build judges, in artifact names: the base alone, and (when the
library has kernels) the morphed model with each site's default kernel live."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kasmina_edge.compile.chain import ChainLayout
    from kasmina_edge.compile.split import ArtifactSpec, SegmentedModel


@dataclass(frozen=True)
class ChainPlan:
    segments: tuple[str, ...]  # segment artifact names, in chain order
    morphed: dict[int, str]  # site -> the kernel artifact live there by default
    # (name, layout in artifact names, the same layout in torch seed ids): "base", then "morphed" if any
    configs: list[tuple[str, ChainLayout, dict[int, str]]]


def plan_chains(specs: list[ArtifactSpec], model: SegmentedModel) -> ChainPlan:
    from kasmina_edge.compile.chain import ChainLayout

    segments = tuple(s.name for s in specs if s.kind == "segment")
    kernel_art = {s.seed_id: s.name for s in specs if s.kind == "kernel"}
    morphed = {site: kernel_art[sid] for site, sid in model.default_active().items()}
    configs: list[tuple[str, ChainLayout, dict[int, str]]] = [("base", ChainLayout(segments, {}), {})]
    if morphed:
        configs.append(("morphed", ChainLayout(segments, morphed), model.default_active()))
    return ChainPlan(segments, morphed, configs)
