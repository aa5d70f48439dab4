"""Profiler test fixtures: the runtime tests' signed fixture bundles (built once, cached; see
tests/runtime/fixture_bundle.py) and their artifacts as bytes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

RUNTIME_TESTS = Path(__file__).resolve().parent.parent / "runtime"
sys.path.insert(0, str(RUNTIME_TESTS))

from runtime_fixtures import ensure_fixture_bundles  # noqa: E402


@pytest.fixture(scope="session")
def bundles(request: pytest.FixtureRequest) -> Path:
    return ensure_fixture_bundles(request.config)


@pytest.fixture(scope="session")
def keys(bundles: Path) -> Path:
    return bundles / "keys"


def _artifacts(bundle: Path, keys: Path) -> dict[str, tuple[bytes, str]]:
    from kasmina_edge.contracts.bundle import read_bundle

    b = read_bundle(bundle, keys)
    return {
        a.name: (b.artifact_bytes(a.name), a.format)
        for a in b.manifest.artifacts
        if a.kind in ("segment", "kernel", "whole")
    }


@pytest.fixture(scope="session")
def tflite_artifacts(bundles: Path, keys: Path) -> dict[str, bytes]:
    return {n: d for n, (d, _) in _artifacts(bundles / "cortex-m-v1.kedge", keys).items()}


@pytest.fixture(scope="session")
def onnx_artifacts(bundles: Path, keys: Path) -> dict[str, bytes]:
    return {n: d for n, (d, _) in _artifacts(bundles / "x86-v1.kedge", keys).items()}
