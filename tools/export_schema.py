"""Write the bundle manifest's JSON Schema to kasmina_edge/contracts/manifest.schema.json.

python tools/export_schema.py          # (re)write it
python tools/export_schema.py --check  # exit 1 if the committed file is stale
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from kasmina_edge.contracts.manifest import json_schema_text

OUT = Path(__file__).resolve().parents[1] / "kasmina_edge" / "contracts" / "manifest.schema.json"


def main(argv: list[str]) -> int:
    text = json_schema_text()
    if "--check" in argv:
        current = OUT.read_text() if OUT.exists() else ""
        if current != text:
            print(f"{OUT} is stale: run python tools/export_schema.py", file=sys.stderr)
            return 1
        print(f"{OUT} is current")
        return 0
    fd, tmp = tempfile.mkstemp(dir=OUT.parent, prefix=".manifest.schema.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, OUT)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
