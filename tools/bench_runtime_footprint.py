"""Footprint of the device install (item 4 of issue 21): disk, import time of the runtime, memory while streaming.

    .venv/bin/python tools/bench_runtime_footprint.py --bundle B.kedge --keys KEYS [--device-venv PATH]

The device install is ``pip install kasmina-edge`` with no extras. Without ``--device-venv`` a fresh venv is
made in a temporary folder and the checkout installed into it (no extras; pip's own configuration, so local
wheel folders and indexes count). Measured there, in subprocesses of that venv's Python:

* disk: every installed distribution's files as they lie on disk (listed in its RECORD), pip and setuptools left
  out (a device image needs neither), and the sum;
* import time: ``import kasmina_edge.runtime.engine`` and the LiteRT interpreter, median of fresh processes;
* resident memory: peak VmRSS while the runtime boots the bundle on LiteRT and streams 5 minutes of
  synthetic ECG (the record's files need wfdb, a host extra), and right after the imports.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
NOT_INSTALLED = frozenset({"pip", "setuptools", "wheel"})  # tools of the venv, not part of the device install

_SIZES = """
import json
from importlib import metadata
out = {}
for d in metadata.distributions():
    total = 0
    for f in d.files or []:
        p = d.locate_file(f)
        if p.is_file():
            total += p.stat().st_size  # on disk: RECORD sizes leave out the bundled .libs of some wheels
    out[d.metadata["Name"]] = total
print(json.dumps(out))
"""

_IMPORT = """
import time
t0 = time.perf_counter()
import kasmina_edge.runtime.engine, kasmina_edge.runtime.backends
from ai_edge_litert import interpreter
print(time.perf_counter() - t0)
"""

_STREAM = """
import json, sys
from pathlib import Path
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) * 1024
    return 0
from kasmina_edge.contracts.bundle import read_bundle
from kasmina_edge.ecg.sources import open_source
from kasmina_edge.runtime.backends import LiteRtBackend
from kasmina_edge.runtime.engine import DeviceRuntime
from kasmina_edge.runtime.image import load_image
after_import = rss()
src = open_source("synthetic:clean?minutes=5")
chunks = list(src.chunks(180))
image = load_image(read_bundle(Path(sys.argv[1]), Path(sys.argv[2])), LiteRtBackend("xnnpack"))
rt = DeviceRuntime(image, fs=src.fs, sink=lambda e: None)
rt.boot()
peak = rss()
for c in chunks:
    rt.feed(c)
    peak = max(peak, rss())
rt.finish()
mods = sorted(m for m in sys.modules if "." not in m and not m.startswith("_"))
print(json.dumps({"after_import": after_import, "peak_streaming": peak, "beats": rt.counters.beats,
                  "onnxruntime_loaded": "onnxruntime" in sys.modules, "top_modules": mods}))
"""


def make_device_venv(folder: Path) -> Path:
    """A fresh venv with the checkout installed, no extras (the device install)."""
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    py = folder / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--progress-bar", "off", str(REPO)], check=True)
    return py


def _run(py: Path, code: str, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    res = subprocess.run([str(py), "-c", code, *args], capture_output=True, text=True, env=env, cwd="/", check=True)
    return res.stdout.strip().splitlines()[-1]


def measure(py: Path, bundle: Path, keys: Path, imports: int = 5) -> dict[str, Any]:
    sizes: dict[str, int] = json.loads(_run(py, _SIZES))
    installed = {k: v for k, v in sizes.items() if k.lower() not in NOT_INSTALLED}
    import_s = statistics.median(float(_run(py, _IMPORT)) for _ in range(imports))
    stream = json.loads(_run(py, _STREAM, str(bundle), str(keys)))
    total = sum(installed.values())
    return {
        "python": str(py),
        "disk_mb": total / 1e6,
        "by_package_mb": {k: round(v / 1e6, 1) for k, v in sorted(installed.items(), key=lambda kv: -kv[1])},
        "import_s": import_s,
        "rss_after_import_mb": stream["after_import"] / 1e6,
        "rss_peak_streaming_mb": stream["peak_streaming"] / 1e6,
        "beats": stream["beats"],
        "onnxruntime_installed": any(k.lower() == "onnxruntime" for k in installed),
        "onnxruntime_loaded": stream["onnxruntime_loaded"],
    }


def footprint(bundle: Path, keys: Path, device_venv: Path | None = None) -> dict[str, Any]:
    if device_venv is not None:
        return measure(device_venv / "bin" / "python", bundle, keys)
    with tempfile.TemporaryDirectory(prefix="kasmina-device-venv-") as tmp:
        py = make_device_venv(Path(tmp) / "venv")
        return measure(py, bundle, keys)


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--keys", type=Path, required=True)
    ap.add_argument("--device-venv", type=Path, help="an existing device venv (default: a fresh one)")
    args = ap.parse_args(argv)
    print(json.dumps(footprint(args.bundle, args.keys, args.device_venv), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
