"""Contracts test fixtures: the runtime tests' signed fixture bundles (built once, cached; see
tests/runtime/fixture_bundle.py) and their keys, for the manifest checks on real bundles."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "runtime"))

from runtime_fixtures import ensure_fixture_bundles  # noqa: E402


@pytest.fixture(scope="session")
def bundles(request: pytest.FixtureRequest) -> Path:
    return ensure_fixture_bundles(request.config)


@pytest.fixture(scope="session")
def keys(bundles: Path) -> Path:
    return bundles / "keys"
