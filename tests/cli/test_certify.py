"""`kasmina-edge certify` through the console script: exit 0 on a compliant set-up, 1 with a violation planted,
2 for a user error; --json carries every check with its requirement and evidence."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.append(str(Path(__file__).resolve().parent.parent / "validate"))  # vbundles, certify_setup

from certify_setup import Setup, make_setup  # noqa: E402


@pytest.fixture
def site(bundles: Path, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Setup:
    monkeypatch.setenv("KASMINA_COMMAND_KEYS", str(tmp_path / "command-keys"))
    return make_setup(tmp_path / "site", bundles / "x86-v1.kedge", bundles / "keys")


def _certify(kasmina, s: Setup, *extra: str):  # type: ignore[no-untyped-def]
    return kasmina("certify", str(s.bundle), "--keys", str(s.keys), "--logs", str(s.logs), "--config", str(s.config),
                   "--sbom", str(s.root / "sbom.json"), *extra)


def test_a_compliant_setup_exits_0_and_erases_a_patient(kasmina, site: Setup) -> None:  # type: ignore[no-untyped-def]
    out = _certify(kasmina, site, "--erase", "P-001", "--json")
    assert out.code == 0, out.out
    doc = json.loads(out.out)
    assert doc["passed"] and "not a certification" in doc["scope"]
    checks = {c["id"]: c for c in doc["checks"]}
    assert checks["erasure"]["status"] == "pass" and "GDPR Art. 17" in checks["erasure"]["requirements"][0]
    assert checks["audit-chain"]["requirements"][0].startswith("HIPAA 164.312(b)")
    assert "patch-01" not in site.store.read_text()


def test_a_violation_exits_1_and_says_which(kasmina, site: Setup) -> None:  # type: ignore[no-untyped-def]
    (site.keys / "bundle-signing.key").chmod(0o644)
    out = _certify(kasmina, site)
    assert out.code == 1 and "keys-private" in out.out and "FAIL" in out.out


def test_user_errors_exit_2(kasmina, site: Setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert kasmina("certify", "--logs", str(tmp_path / "none")).code == 2
    bad = tmp_path / "bad.toml"
    bad.write_text("[mqtt]\nbroker = 'x'\n")
    out = kasmina("certify", "--config", str(bad), "--json")
    assert out.code == 2 and "mqtt.broker: Extra inputs are not permitted" in json.loads(out.out)["error"]
    assert kasmina("certify", "missing.kedge").code == 2
