"""The curriculum's stages by index, imported only when a stage runs (each pulls its own libraries)."""

from __future__ import annotations

import importlib

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.curriculum.stage import CurriculumStage

# index -> "module:factory"; the factory takes no argument and returns the stage
STAGES: dict[int, str] = {
    0: "kasmina_edge.curriculum.toy:gaussian_clusters_stage",
    1: "kasmina_edge.curriculum.toy:spirals_moons_stage",
    2: "kasmina_edge.curriculum.digits:digits_corruption_stage",
    3: "kasmina_edge.curriculum.ecg_stage:ecg_stage",
    4: "kasmina_edge.curriculum.retrieval:retrieval_stage",
    5: "kasmina_edge.curriculum.edge:edge_build_stage",
    6: "kasmina_edge.curriculum.edge:edge_adapt_stage",
}


def parse_stages(text: str) -> list[int]:
    """``"0-6"``, ``"2"``, ``"0,2,4-5"`` -> sorted stage indices; anything else is one clear error."""
    picked: set[int] = set()
    for part in text.replace(" ", "").split(","):
        lo, _, hi = part.partition("-")
        try:
            a, b = int(lo), int(hi or lo)
        except ValueError:
            raise KasminaError(f"--stages: {part!r} is not a stage or a range like 0-6") from None
        if a > b or a not in STAGES or b not in STAGES:
            raise KasminaError(f"--stages: {part!r} is outside the stages {min(STAGES)}-{max(STAGES)}")
        picked.update(range(a, b + 1))
    return sorted(picked)


def load_stage(index: int) -> CurriculumStage:
    module, _, factory = STAGES[index].partition(":")
    stage: CurriculumStage = getattr(importlib.import_module(module), factory)()
    return stage
