"""Fixture bundles for the runtime and emulator tests: built once (torch, in a child process), cached by content."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
DATA = REPO.parent / "shared" / "data"


def ensure_fixture_bundles(config: pytest.Config) -> Path:
    """The fixture bundles (``fixture_bundle.py``), rebuilt only when that file changes."""
    key = hashlib.sha256((HERE / "fixture_bundle.py").read_bytes()).hexdigest()[:12]
    folder = Path(config.cache.mkdir(f"kasmina-runtime-fixtures-{key}"))
    if not (folder / "ok").exists():
        import importlib.util

        for mod in ("torch", "litert_torch", "onnx"):  # looked up, not imported: the build runs in a child
            if importlib.util.find_spec(mod) is None:
                pytest.skip(f"{mod} is not installed: it builds the fixture bundles")
        proc = subprocess.run([sys.executable, str(HERE / "fixture_bundle.py"), str(folder)], cwd=REPO,
                              capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"building the fixture bundles failed:\n{proc.stderr[-3000:]}")
    return folder


def mitdb_100() -> Path | None:
    base = DATA / "mitdb" / "100"
    return base if base.with_suffix(".hea").exists() else None
