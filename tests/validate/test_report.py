"""The report: self-contained HTML with its plots inlined, JSON, and a detached signature with the bundle keys
that catches a changed file or another key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from vrun import run_pipeline

from kasmina_edge.validate.report_html import document, write_report
from kasmina_edge.validate.report_signing import ReportSignatureError, verify_files


@pytest.fixture(scope="module")
def written(good_bundle: Path, records: Path, plan_file: Path, keys: Path,
            tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("report")
    run, ctx = run_pipeline(good_bundle, records, plan_file, keys, tmp / "work")
    return write_report(document(run, ctx), ctx.figures, tmp / "out" / "report.html", keys, 0.005)


def test_the_report_is_self_contained_with_its_plots(written: dict[str, Path]) -> None:
    text = written["html"].read_text()
    assert text.count("data:image/png;base64,") == 4  # confusion, per record, latency, lifecycle timeline
    assert "<script" not in text and "http://" not in text and "https://" not in text  # nothing fetched
    assert "not a certification" in text and "PASS" in text
    assert "device, gross" in text and "base alone, gross" in text and "forced live" in text  # the figures' tables
    doc = json.loads(written["json"].read_text())
    assert doc["passed"] and [s["name"] for s in doc["stages"]][0] == "artifacts"
    assert doc["stages"][1]["criteria"]["class_floors"]["N"]["se"] == 0.95  # the plan's criteria travel with it


def test_the_signature_verifies_and_catches_a_change(written: dict[str, Path], keys: Path, tmp_path: Path) -> None:
    sig = verify_files(written["sig"], keys)
    assert set(sig["files"]) == {"report.html", "report.json"}
    html = written["html"].read_text()
    try:
        written["html"].write_text(html.replace("PASS", "PASS!"))
        with pytest.raises(ReportSignatureError, match="changed since the report was signed"):
            verify_files(written["sig"], keys)
    finally:
        written["html"].write_text(html)
    from kasmina_edge.contracts.bundle import init_keys

    init_keys(tmp_path / "other")
    with pytest.raises(ReportSignatureError, match="does not verify with these keys"):
        verify_files(written["sig"], tmp_path / "other")
