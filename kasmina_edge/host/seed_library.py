"""The seed library: the trained seed kernels that earned their place, one per (condition, site).

On disk, a folder with ``library.json`` (metadata: blueprint, site, shape, condition tags,
parameter count, lifecycle history, measured gain) and ``seeds.pt`` (each seed module's
weights, loadable with ``weights_only=True``). Both are written atomically, weights first, so
a library.json on disk always names weights that exist.
"""

from __future__ import annotations

import copy
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.host.experiment import atomic_write_bytes, atomic_write_json

LIBRARY_FORMAT = 1
LIBRARY_JSON = "library.json"
SEEDS_PT = "seeds.pt"


class LibraryError(KasminaError):
    """A seed library folder that is missing, incomplete or inconsistent."""


@dataclass
class LibraryEntry:
    key: str  # "<condition>@<site>"
    condition: str
    tags: list[str]
    site: str
    site_index: int
    channels: int
    length: int
    blueprint: str
    blueprint_params: dict[str, Any]
    grafting: str
    intensity: float
    param_count: int
    param_fraction: float  # of the base model's parameters
    macs: int
    baseline_val: float  # macro-F1 of the host alone on the condition (pre-germination baseline)
    seed_val: float  # with the seed
    gain: float
    clean_host: float | None
    clean_seed: float | None
    seed_id: str
    lifecycle: list[dict[str, Any]] = field(default_factory=list)
    kasmina: dict[str, Any] = field(default_factory=dict)  # KasminaLayer.seed_record(): ops, targets, histories
    test_base_f1: float | None = None
    test_seed_f1: float | None = None

    @property
    def final_stage(self) -> str:
        moves = [e for e in self.lifecycle if e.get("event") == "transition"]
        return str(moves[-1]["to"]) if moves else "DORMANT"


@dataclass
class SeedLibrary:
    meta: dict[str, Any]
    entries: dict[str, LibraryEntry] = field(default_factory=dict)
    states: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)

    def add(self, entry: LibraryEntry, state: dict[str, torch.Tensor]) -> None:
        """Keep the better of two seeds for the same (condition, site)."""
        old = self.entries.get(entry.key)
        if old is not None and old.gain >= entry.gain:
            return
        self.entries[entry.key] = entry
        self.states[entry.key] = state

    def for_condition(self, condition: str) -> list[LibraryEntry]:
        return sorted((e for e in self.entries.values() if e.condition == condition), key=lambda e: -e.gain)

    def best(self, condition: str) -> LibraryEntry | None:
        found = self.for_condition(condition)
        return found[0] if found else None

    # -- files --------------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        torch.save({"format": LIBRARY_FORMAT, "states": self.states}, buf)
        atomic_write_bytes(folder / SEEDS_PT, buf.getvalue())
        atomic_write_json(
            folder / LIBRARY_JSON,
            {"format": LIBRARY_FORMAT, "meta": self.meta, "seeds": [asdict(e) for e in self.entries.values()]},
        )

    @classmethod
    def load(cls, folder: Path) -> SeedLibrary:
        meta_path, seeds_path = folder / LIBRARY_JSON, folder / SEEDS_PT
        for p in (meta_path, seeds_path):
            if not p.exists():
                raise LibraryError(f"{p}: missing (not a seed library folder)")
        try:
            body = json.loads(meta_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise LibraryError(f"{meta_path}:{exc.lineno}: not JSON ({exc.msg})") from exc
        if body.get("format") != LIBRARY_FORMAT:
            raise LibraryError(f"{meta_path}: format {body.get('format')!r}, expected {LIBRARY_FORMAT}")
        try:
            weights = torch.load(seeds_path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
            raise LibraryError(f"{seeds_path}: not readable ({type(exc).__name__})") from exc
        lib = cls(meta=dict(body.get("meta", {})))
        for raw in body.get("seeds", []):
            try:
                entry = LibraryEntry(**raw)
            except TypeError as exc:
                raise LibraryError(f"{meta_path}: bad seed entry ({exc})") from exc
            if entry.key not in weights["states"]:
                raise LibraryError(f"{seeds_path}: no weights for seed {entry.key!r}")
            lib.entries[entry.key] = entry
            lib.states[entry.key] = weights["states"][entry.key]
        return lib

    # -- use ------------------------------------------------------------------------------------
    def seed_module(self, key: str) -> nn.Module:
        """The seed kernel as a standalone module (B, C, L) -> (B, C, L), weights loaded."""
        from kasmina_edge.host.blueprints import create_blueprint

        if key not in self.entries:
            raise LibraryError(f"seed {key!r} is not in the library; it has: {', '.join(self.entries) or 'none'}")
        e = self.entries[key]
        module = create_blueprint(e.blueprint, e.channels, e.length, **e.blueprint_params)
        module.load_state_dict(self.states[key])
        return module.eval()

    def apply(self, model: nn.Module, key: str) -> nn.Module:
        """A copy of ``model`` with the seed fossilized at its site (the site's module replaced by it)."""
        module = self.seed_module(key)  # raises for an unknown key
        e = self.entries[key]
        out = copy.deepcopy(model)
        sites = out.sites  # type: ignore[union-attr]
        if e.site not in sites:
            raise LibraryError(f"seed {key!r}: the model has no site {e.site!r}")
        sites[e.site] = module
        return out.eval()
