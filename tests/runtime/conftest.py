"""Runtime test fixtures: the signed fixture bundles (see fixture_bundle.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from runtime_fixtures import ensure_fixture_bundles  # noqa: E402


@pytest.fixture(scope="session")
def bundles(request: pytest.FixtureRequest) -> Path:
    return ensure_fixture_bundles(request.config)


@pytest.fixture(scope="session")
def keys(bundles: Path) -> Path:
    return bundles / "keys"
