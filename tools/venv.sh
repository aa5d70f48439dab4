#!/usr/bin/env bash
# Create ./.venv and install kasmina-edge with the host and dev extras (idempotent: skips when up to date).
# Usage: bash tools/venv.sh            # host + server + compliance + dev (everything, as CI)
#        EXTRAS=dev bash tools/venv.sh # device-only install (no torch) plus test tools
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
EXTRAS=${EXTRAS:-host,server,compliance,research,dev}
stamp=.venv/.kasmina-installed
want="$(sha256sum pyproject.toml | cut -c1-16) $EXTRAS"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then exit 0; fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
if [[ ",$EXTRAS," == *",host,"* ]]; then
  # torch alone and first, pinned exactly: asked for together with its dependents, pip may pick a
  # multi-GB CUDA build. Set PIP_EXTRA_INDEX_URL to PyTorch's CPU index where no CPU wheel is at hand.
  .venv/bin/pip install --progress-bar off "torch==2.13.0"
fi
.venv/bin/pip install --progress-bar off -e ".[$EXTRAS]"
echo "$want" > "$stamp"
