"""Where the real data the project does not ship lives (MIT-BIH, NSTDB)."""

from __future__ import annotations

import os
from pathlib import Path

import kasmina_edge

ENV_VAR = "KASMINA_DATA"


def data_root() -> Path:
    """``$KASMINA_DATA`` if set, else ``<checkout>/../shared/data`` (beside the repository)."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    return Path(kasmina_edge.__file__).resolve().parents[1].parent / "shared" / "data"


def mitdb_path(record: str) -> Path:
    """Base path (no extension) of an MIT-BIH record, e.g. ``mitdb_path("100")``."""
    return data_root() / "mitdb" / record
