"""The security tests reuse the runtime tests' fixture bundles and the firmware tests' seed bundles (same cache)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "runtime"))
sys.path.insert(0, str(HERE.parent / "firmware_sim"))

from runtime_fixtures import ensure_fixture_bundles  # noqa: E402


@pytest.fixture(scope="session")
def bundles(request: pytest.FixtureRequest) -> Path:
    return ensure_fixture_bundles(request.config)


@pytest.fixture(scope="session")
def keys(bundles: Path) -> Path:
    return bundles / "keys"


@pytest.fixture
def devices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "devices"
    monkeypatch.setenv("KASMINA_DEVICES_DIR", str(root))
    return root
