"""Where kasmina-edge keeps its state and keys, and ``KASMINA_HOME``, which moves both.

Without ``KASMINA_HOME``: signing keys in ``~/.config/kasmina-edge/keys``; emulated devices, command keys
and the operator's audit log under ``~/.local/share/kasmina-edge``. With ``KASMINA_HOME=DIR`` all four live
in DIR (``keys/``, ``devices/``, ``command-keys/``, ``audit/``), so device names are per home: two projects
with two homes may each have an ``emu://patch-01``. A variable set for one of them (``KASMINA_KEYS_DIR``,
``KASMINA_DEVICES_DIR``, ``KASMINA_COMMAND_KEYS``, ``KASMINA_AUDIT_DIR``) still wins.
"""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "KASMINA_HOME"
_SET_BY_HOME: dict[str, str] = {}  # what apply_home put there (a later home replaces it; a user's value stays)

# the variable each part of the product reads, and its folder under a home
PLACES: dict[str, tuple[str, str]] = {
    "keys": ("KASMINA_KEYS_DIR", "keys"),
    "devices": ("KASMINA_DEVICES_DIR", "devices"),
    "command keys": ("KASMINA_COMMAND_KEYS", "command-keys"),
    "audit": ("KASMINA_AUDIT_DIR", "audit"),
}


def apply_home() -> Path | None:
    """Point every state and key folder into ``$KASMINA_HOME`` (when set); returns the home."""
    home = os.environ.get(HOME_ENV)
    if not home:
        return None
    root = Path(home).expanduser().absolute()
    for var, sub in PLACES.values():
        if var not in os.environ or os.environ[var] == _SET_BY_HOME.get(var):
            os.environ[var] = _SET_BY_HOME[var] = str(root / sub)
    return root
