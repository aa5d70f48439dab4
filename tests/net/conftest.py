"""The net tests share net_helpers (a scripted device day around the loopback network)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
