"""Fixtures for the validation tests: the runtime tests' fixture bundles (cached), the classifier bundles made
from them (``vbundles``), a short annotated synthetic record with a licence line, and a plan sized for it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "runtime"))
sys.path.insert(0, str(HERE))

import vbundles  # noqa: E402
from runtime_fixtures import ensure_fixture_bundles  # noqa: E402

DATA = HERE.parent.parent.parent / "shared" / "data"

# A plan for a 2-minute synthetic record: no minutes excluded, noise from the first second in 30-s stretches,
# fault times inside the record; floors a rule classifier that calls every beat N meets.
TEST_PLAN = """\
schema = "kasmina-validate-plan/1"
version = 1
[accuracy]
exclude_first_s = 0.0
qrs_se_min = 0.95
qrs_ppv_min = 0.95
macro_f1_min = 0.2
min_support = 10
max_kernel_drop = 0.02
[accuracy.class_floors]
N = { se = 0.95, ppv = 0.75 }
[robustness]
noise = ["ma"]
snr_db = [6.0]
first_clean_s = 0.0
stretch_s = 30.0
lead_change = true
max_seed_loss = 0.02
[device]
emulator_seconds = 60.0
battery_days_min = 0.0
[faults]
link = "nb-iot"
events = ["burst@20+10:0.8", "spike@40+10:3", "restart@60+10", "broker@70+40"]
drain_s = 300.0
[certification]
required = ["raw-ecg", "logs-encrypted", "signed", "keys-private", "sbom", "data-licences"]
"""


@pytest.fixture(scope="session")
def fixtures(request: pytest.FixtureRequest) -> Path:
    return ensure_fixture_bundles(request.config)


@pytest.fixture(scope="session")
def keys(fixtures: Path) -> Path:
    return fixtures / "keys"


@pytest.fixture(scope="session")
def vdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("validate")


@pytest.fixture(scope="session")
def good_bundle(fixtures: Path, vdir: Path) -> Path:
    return vbundles.classifier_bundle(fixtures, vdir / "good.kedge", site1_factor=1.0)


@pytest.fixture(scope="session")
def harmful_bundle(fixtures: Path, vdir: Path) -> Path:
    return vbundles.classifier_bundle(fixtures, vdir / "harmful.kedge", site1_factor=10.0)


@pytest.fixture(scope="session")
def records(vdir: Path) -> Path:
    """One 2-minute annotated synthetic record (N, S, V, F beats; two leads), with a README naming its licence."""
    from kasmina_edge.ecg.scenarios import make_scenario
    from kasmina_edge.ecg.wfdb_io import write_wfdb

    folder = vdir / "records"
    write_wfdb(make_scenario("arrhythmia-mix", 2.0, seed=3), folder)
    (folder / "README.md").write_text("Synthetic records made by kasmina-edge ecg synth.\n"
                                      "License: CC0 1.0 (synthetic, no patient).\n")
    return folder


@pytest.fixture(scope="session")
def plan_file(vdir: Path) -> Path:
    p = vdir / "plan.toml"
    p.write_text(TEST_PLAN if nstdb_present() else TEST_PLAN.replace('noise = ["ma"]', "noise = []"))
    return p


def nstdb_present() -> bool:
    return (DATA / "nstdb" / "ma.hea").exists()


needs_nstdb = pytest.mark.skipif(not nstdb_present(), reason="needs ../shared/data/nstdb (NSTDB ma, bw) for real noise")

