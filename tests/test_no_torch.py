"""The device side never imports torch: a device installs the base package only (ARCHITECTURE.md).

Each check runs in a fresh interpreter, so what other tests imported does not count, and imports every
submodule of the device packages (pkgutil.walk_packages, none skipped): a torch import hidden in a
rarely used module fails here rather than on a device.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import kasmina_edge

REPO = Path(kasmina_edge.__file__).resolve().parent.parent

# What runs on a device: the contracts, the torch-free core, ECG front end, runtime, link and emulator.
DEVICE_PACKAGES = [
    "kasmina_edge.contracts",
    "kasmina_edge.core",
    "kasmina_edge.ecg",
    "kasmina_edge.runtime",
    "kasmina_edge.net",
    "firmware_sim",
]
# Packages of the `host` extra (pyproject): not installed on a device, so no device module may import them
# at import time.
HOST_ONLY = [
    "torch",
    "torchvision",
    "brevitas",
    "litert_torch",
    "onnx",
    "onnxscript",
    "wfdb",
    "matplotlib",
    "amqtt",
]

_PROBE = r"""
import importlib, json, pkgutil, sys

watched = json.loads(sys.argv[1])
walk = sys.argv[2] == "walk"
imported, first_seen = [], {}

def note(name):
    imported.append(name)
    for mod in watched:
        if mod in sys.modules and mod not in first_seen:
            first_seen[mod] = name  # the first module after whose import it showed up

def fail(name):
    raise ImportError(f"cannot import package {name}")

for name in sys.argv[3:]:
    module = importlib.import_module(name)
    note(name)
    if walk and hasattr(module, "__path__"):
        for info in pkgutil.walk_packages(module.__path__, prefix=name + ".", onerror=fail):
            importlib.import_module(info.name)
            note(info.name)
print(json.dumps({"imported": imported, "first_seen": first_seen}))
"""


def _probe(modules: list[str], watched: list[str], *, walk: bool) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(watched), "walk" if walk else "no-walk", *modules],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"importing the device packages failed:\n{result.stderr[-3000:]}"
    report: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


def test_device_packages_never_import_torch() -> None:
    report = _probe(DEVICE_PACKAGES, ["torch"], walk=True)
    imported = report["imported"]
    assert isinstance(imported, list) and set(DEVICE_PACKAGES) <= set(imported)
    first_seen = report["first_seen"]
    assert first_seen == {}, f"torch was imported by {first_seen}"


def test_device_packages_import_no_host_extra() -> None:
    report = _probe(DEVICE_PACKAGES, HOST_ONLY, walk=True)
    assert report["first_seen"] == {}, (
        f"host-only packages imported at import time (module: culprit): {report['first_seen']}"
    )


def test_cli_starts_without_torch() -> None:
    # Command modules import heavy things inside their commands: `kasmina-edge --help` must not load torch.
    report = _probe(["kasmina_edge.cli.app"], ["torch"], walk=False)
    assert report["first_seen"] == {}, f"torch was imported by {report['first_seen']}"


def test_probe_detects_and_attributes_an_import() -> None:
    # The probe must be able to fail: fractions imports decimal, json and its submodules do not.
    report = _probe(["json", "fractions"], ["decimal"], walk=True)
    assert "json.decoder" in report["imported"]  # type: ignore[operator]
    assert report["first_seen"] == {"decimal": "fractions"}
