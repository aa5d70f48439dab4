#!/usr/bin/env bash
# Create ./.venv-et: the ExecuTorch side of tools/bench_runtime.py, never part of a device install.
# It layers over the project's ./.venv (torch 2.13.0 CPU, torchao, numpy ...: a .pth file puts that venv's
# site-packages on its path) and adds executorch with --no-deps plus the few packages its exporter and
# Python runtime import. Usage: bash tools/bench_executorch_venv.sh   (needs ./.venv from tools/venv.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
ET_VERSION=${ET_VERSION:-1.5.1}  # its wheel lists torchao>=0.18,<0.19 and no torch pin: torch 2.13.0 is ours
[ -x .venv/bin/python ] || { echo "no ./.venv: run tools/venv.sh first" >&2; exit 2; }
[ -x .venv-et/bin/python ] || .venv/bin/python -m venv --without-pip .venv-et
base_site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
et_site=$(.venv-et/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$base_site" > "$et_site/_kasmina_base_venv.pth"
# the base venv's pip, pointed at this venv's interpreter
.venv/bin/python -m pip --python .venv-et/bin/python install --progress-bar off --no-deps "executorch==$ET_VERSION"
.venv/bin/python -m pip --python .venv-et/bin/python install --progress-bar off \
  expecttest kgb parameterized py-cpuinfo ruamel.yaml pyyaml "pytorch-tokenizers>=1.5.0" hydra-core omegaconf
.venv-et/bin/python -c "import executorch, torch; print('executorch', '$ET_VERSION', 'torch', torch.__version__)"
