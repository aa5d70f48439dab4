"""Write the bundle manifest's JSON Schema to kasmina_edge/contracts/manifest.schema.json."""

from __future__ import annotations

import json
from pathlib import Path

from kasmina_edge.contracts.manifest import json_schema

OUT = Path(__file__).resolve().parents[1] / "kasmina_edge" / "contracts" / "manifest.schema.json"

if __name__ == "__main__":
    OUT.write_text(json.dumps(json_schema(), indent=2, sort_keys=True) + "\n")
    print(f"wrote {OUT}")
