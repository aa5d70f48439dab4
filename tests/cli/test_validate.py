"""`kasmina-edge validate` through the console script: exit 0 when every stage passes, 1 when one fails (with
its one-line reason), 2 for a user error (one line, or JSON under --json); --write-plan, --verify-report."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.append(str(Path(__file__).resolve().parent.parent / "validate"))  # vbundles, certify_setup

import vbundles  # noqa: E402


@pytest.fixture(scope="module")
def vfiles(bundles: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from kasmina_edge.ecg.scenarios import make_scenario
    from kasmina_edge.ecg.wfdb_io import write_wfdb

    tmp = tmp_path_factory.mktemp("vcli")
    recs = tmp / "records"
    write_wfdb(make_scenario("arrhythmia-mix", 2.0, seed=3), recs)
    plan = tmp / "plan.toml"
    plan.write_text('[accuracy]\nexclude_first_s = 0.0\nqrs_se_min = 0.95\nqrs_ppv_min = 0.95\nmacro_f1_min = 0.2\n'
                    '[accuracy.class_floors]\nN = { se = 0.95, ppv = 0.75 }\n')
    return {"good": vbundles.classifier_bundle(bundles, tmp / "good.kedge"),
            "harmful": vbundles.classifier_bundle(bundles, tmp / "harmful.kedge", site1_factor=10.0),
            "records": recs, "plan": plan, "keys": bundles / "keys"}


def _validate(kasmina, f: dict[str, Path], bundle: str, *extra: str) -> Any:  # type: ignore[no-untyped-def]
    return kasmina("validate", str(f[bundle]), "--data", f"wfdb:{f['records']}", "--keys", str(f["keys"]),
                   "--plan", str(f["plan"]), "--stages", "accuracy", *extra)


def test_a_passing_validation_exits_0_and_writes_the_signed_report(kasmina, vfiles: dict[str, Path],
                                                                   tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    report = tmp_path / "r" / "report.html"
    out = _validate(kasmina, vfiles, "good", "--report", str(report))
    assert out.code == 0, out.err
    assert "accuracy" in out.out and "pass" in out.out
    assert report.exists() and report.with_suffix(".json").exists()
    ok = kasmina("validate", "--verify-report", str(report) + ".sig", "--keys", str(vfiles["keys"]), "--json")
    assert ok.code == 0 and json.loads(ok.out)["verified"] is True


def test_a_failing_stage_exits_1_with_its_reason_in_json(kasmina, vfiles: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    out = _validate(kasmina, vfiles, "harmful", "--json")
    assert out.code == 1
    doc = json.loads(out.out)
    acc = next(s for s in doc["stages"] if s["name"] == "accuracy")
    assert not doc["passed"] and acc["status"] == "fail"
    assert acc["reason"].startswith("kernel kernel_s1_lead-adapter_site1 forced live")


@pytest.mark.parametrize(("args", "message"), [
    (["validate", "nothing.kedge", "--data", "wfdb:."], "nothing.kedge: no such bundle"),
    (["validate", "{good}"], "--data wfdb:DIR[,DIR] is required"),
    (["validate", "{good}", "--data", "csv:x.csv"], "give wfdb:DIR[,DIR]"),
    (["validate", "{good}", "--data", "wfdb:{records}", "--records", "999"], "--records: 999 not among"),
    (["validate", "{good}", "--data", "wfdb:{records}", "--stages", "speed"], "--stages speed: unknown"),
    (["validate", "{good}", "--data", "wfdb:{records}", "--profile", "toaster"], "toaster"),
])  # fmt: skip
def test_user_errors_exit_2_in_one_line(kasmina, vfiles: dict[str, Path], args: list[str], message: str) -> None:  # type: ignore[no-untyped-def]
    argv = [a.format(good=vfiles["good"], records=vfiles["records"]) for a in args]
    out = kasmina(*argv)
    assert out.code == 2 and len(out.err_lines) == 1 and message in out.err, out.err
    js = kasmina(*argv, "--json")
    assert js.code == 2 and json.loads(js.out)["code"] == 2


def test_a_bad_plan_is_a_user_error(kasmina, vfiles: dict[str, Path], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.toml"
    bad.write_text("[accuracy]\nqrs_se_mn = 1\n")
    out = kasmina("validate", str(vfiles["good"]), "--data", f"wfdb:{vfiles['records']}", "--plan", str(bad))
    assert out.code == 2 and "accuracy.qrs_se_mn: Extra inputs are not permitted" in out.err


def test_write_plan_writes_the_shipped_plan(kasmina, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = kasmina("validate", "--write-plan", str(tmp_path / "p.toml"))
    assert out.code == 0 and 'schema = "kasmina-validate-plan/1"' in (tmp_path / "p.toml").read_text()


def test_a_record_inside_the_excluded_minutes_is_a_user_error(kasmina, vfiles: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    out = kasmina("validate", str(vfiles["good"]), "--data", f"wfdb:{vfiles['records']}", "--keys", str(vfiles["keys"]),
                  "--stages", "accuracy")  # the shipped plan leaves out the first 300 s of a 120-s record
    assert out.code == 2 and "wholly inside the plan's accuracy.exclude_first_s = 300 s" in out.err


def test_noise_from_a_folder_the_user_names(kasmina, vfiles: dict[str, Path], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = kasmina("validate", str(vfiles["good"]), "--data", f"wfdb:{vfiles['records']}", "--keys", str(vfiles["keys"]),
                  "--plan", str(vfiles["plan"]), "--stages", "robustness", "--noise", str(tmp_path))
    assert out.code == 2 and f"noise record {tmp_path}/ma.hea not found" in out.err


def test_a_kept_workdir_can_be_used_again(kasmina, vfiles: dict[str, Path], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    args = ["validate", str(vfiles["good"]), "--data", f"wfdb:{vfiles['records']}", "--keys", str(vfiles["keys"]),
            "--plan", str(vfiles["plan"]), "--stages", "device", "--workdir", str(tmp_path / "w")]
    assert kasmina(*args).code == 0
    again = kasmina(*args)  # the emulated device flashed the first time is gone: no "not newer" refusal
    assert again.code == 0, again.err
    assert (tmp_path / "w" / "logs" / "device-run.jsonl.enc").exists()
