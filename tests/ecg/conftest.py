"""Shared fixtures for the ECG tests: real data locations and a few generated records."""

from __future__ import annotations

from pathlib import Path

import pytest

from kasmina_edge.ecg.data import data_root

DATA = data_root()
MITDB = DATA / "mitdb"
NSTDB = DATA / "nstdb"


def have_mitdb(record: str = "100") -> bool:
    return (MITDB / f"{record}.hea").exists() and (MITDB / f"{record}.dat").exists()


needs_mitdb = pytest.mark.skipif(
    not have_mitdb(), reason=f"MIT-BIH record 100 not found under {MITDB} (set KASMINA_DATA or add ../shared/data)"
)
needs_nstdb = pytest.mark.skipif(
    not (NSTDB / "ma.hea").exists(), reason=f"NSTDB noise records not found under {NSTDB}"
)


@pytest.fixture(scope="session")
def tmp_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ecg")


def pytest_configure(config: pytest.Config) -> None:
    # wfdb 4.3 calls a pandas API that pandas 3 deprecates; not ours to fix.
    config.addinivalue_line("filterwarnings", "ignore:The inplace keyword in DataFrame")
