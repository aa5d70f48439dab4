"""Dashboard and fleet tests: the PostgreSQL cluster and Mosquitto helpers are importable here."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
for folder in (HERE, HERE.parent / "net"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from pg_cluster import pg, store_url  # noqa: E402, F401  (fixtures: a throwaway PostgreSQL cluster, both stores)
