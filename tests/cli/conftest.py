"""CLI test helpers: run the console script in-process (its real error path), with a private KASMINA_HOME."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "runtime"))

from runtime_fixtures import ensure_fixture_bundles  # noqa: E402

from kasmina_edge.ecg.data import data_root  # noqa: E402

REPO = Path(__file__).resolve().parent.parent.parent
DATA = REPO.parent / "shared" / "data"
MITDB = data_root() / "mitdb"  # KASMINA_DATA, else ../shared/data beside the checkout
needs_mitdb = pytest.mark.skipif(
    not (MITDB / "100.hea").exists() or not (MITDB / "100.dat").exists(),
    reason=f"MIT-BIH record 100 not found under {MITDB} (set KASMINA_DATA or add ../shared/data)",
)
PLACE_VARS = ("KASMINA_KEYS_DIR", "KASMINA_DEVICES_DIR", "KASMINA_COMMAND_KEYS", "KASMINA_AUDIT_DIR")


@dataclass
class Outcome:
    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return [ln for ln in self.err.splitlines() if ln.strip()]


@pytest.fixture(autouse=True)
def _human_output() -> None:
    """Each test starts in human mode: the --json mode is module state in cli.common, and an in-process run that
    stopped on an error under --json would otherwise leave it on for the next test's sub-app."""
    from kasmina_edge.cli import common

    common.set_json_mode(False)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh KASMINA_HOME (and no per-place variables from the environment), cwd in tmp_path/work."""
    for var in PLACE_VARS:
        monkeypatch.delenv(var, raising=False)
    h = tmp_path / "home"
    monkeypatch.setenv("KASMINA_HOME", str(h))
    monkeypatch.setenv("COLUMNS", "80")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return h


@pytest.fixture
def kasmina(home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """kasmina(*args) -> Outcome: `kasmina-edge ARGS` through the console script's main()."""
    from kasmina_edge.cli.app import main

    def run(*args: str) -> Outcome:
        monkeypatch.setattr(sys, "argv", ["kasmina-edge", *args])
        capsys.readouterr()
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        captured = capsys.readouterr()
        return Outcome(code, captured.out, captured.err)

    return run


@pytest.fixture(scope="session")
def bundles(request: pytest.FixtureRequest) -> Path:
    return ensure_fixture_bundles(request.config)


@pytest.fixture(scope="session")
def keys(bundles: Path) -> Path:
    return bundles / "keys"
