"""What the dashboard pages read from the store: fleet rows, beat sums, lifecycle lanes, drift, strips opened."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kasmina_edge.contracts import codec
from kasmina_edge.contracts.lifecycle import Gate, Stage
from kasmina_edge.contracts.telemetry import (
    AnomalyEvent,
    AnomalyKind,
    BeatCounts,
    GateEvent,
    ReasonCode,
    SeedEvent,
    Severity,
)

pytest.importorskip("sqlalchemy", reason="the server extra is not installed")


from kasmina_edge.dashboard import queries  # noqa: E402
from kasmina_edge.net.store import open_store  # noqa: E402

T0 = 1_800_000_000


def rec(device: str, fseq: int, record: Any) -> dict[str, Any]:
    return {"fleet": "f1", "device": device, "fseq": fseq, "kind": codec.kind_name(record),
            "record": codec.to_dict(record), "link": "nb-iot"}  # fmt: skip


@pytest.fixture()
def store(store_url: str) -> Any:
    st = open_store(store_url)
    rows = [
        rec("a", 0, BeatCounts(0, T0, 60, 70, 2, 1, 0, 0)),
        rec("a", 1, BeatCounts(0, T0 + 60, 60, 65, 0, 4, 1, 2)),
        rec("a", 2, AnomalyEvent(0, T0 + 61, AnomalyKind.PVC_RUN, Severity.WARNING, 0, 800, 0.7)),
        rec("a", 3, AnomalyEvent(0, T0 + 90, AnomalyKind.VT_RUN, Severity.CRITICAL, 0, 2400, 0.9)),
        rec("a", 4, SeedEvent(0, T0 + 91, 2, 5, Stage.DORMANT, Stage.GERMINATED, ReasonCode.GATE_PASSED)),
        rec("a", 5, GateEvent(0, T0 + 92, 2, 5, Gate.G1, False, ReasonCode.GATE_FAILED, 0.4)),
        rec("a", 6, SeedEvent(0, T0 + 93, 2, 5, Stage.GERMINATED, Stage.CULLED, ReasonCode.GATE_FAILED)),
        rec("a", 7, SeedEvent(0, T0 + 94, 0, 1, Stage.DORMANT, Stage.GERMINATED, ReasonCode.GATE_PASSED)),
        rec("b", 0, BeatCounts(0, T0, 60, 50, 0, 0, 0, 0)),
    ]
    for r in rows:
        st.write(r)
    st.write({"fleet": "f1", "device": "a", "drift": {"t": T0 + 100, "sites": [0.1, 0.3, 0.2]}})
    st.write({"fleet": "f1", "device": "a", "ota_report": {"status": "probation_passed", "final": True}})
    st.write({"fleet": "f1", "device": "b", "status": "offline"})
    st.flush()
    yield st
    st.close()


def test_fleet_rows_and_latest_per_device(store: Any) -> None:
    rows = {r["device"]: r for r in queries.fleet(store.engine)}
    assert rows["a"]["records"] == 8 and rows["a"]["alerts"] == 2 and rows["a"]["critical_alerts"] == 1
    assert rows["a"]["last_alert"] == "vt_run"  # the newest, not the first
    assert rows["b"]["alerts"] == 0 and rows["b"]["status"] == "offline" and rows["b"]["link"] == "nb-iot"
    latest = queries.latest_per_device(store.engine)
    assert latest["a"] == {"seed_stage": "GERMINATED", "update": "probation_passed"}  # site 0's move came last
    assert "b" not in latest


def test_a_device_page_reads_its_counts_lanes_and_drift(store: Any) -> None:
    d = queries.device(store.engine, "a")
    assert d is not None
    assert d["beats"] == {"N": 135, "S": 2, "V": 5, "F": 1, "Q": 2}
    lanes = {(lane["site"], lane["kernel_id"]): lane for lane in d["lifecycle"]}
    assert lanes[(2, 5)]["stage"] == "CULLED" and lanes[(0, 1)]["stage"] == "GERMINATED"
    assert [(e["event"], e["gate"], e["passed"]) for e in lanes[(2, 5)]["events"]] == [
        ("transition", None, None), ("gate", "G1", False), ("transition", None, None)]
    assert [a["kind"] for a in d["alerts"]] == ["pvc_run", "vt_run"]
    assert d["drift"] == [{"stored_at": d["drift"][0]["stored_at"], "t": T0 + 100, "sites": [0.1, 0.3, 0.2]}]
    assert d["ota"][0]["status"] == "probation_passed"
    assert queries.device(store.engine, "nobody") is None


def test_a_strip_is_opened_with_the_operators_key_and_thinned(
    store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kasmina_edge.net.commands import provision_device_key, seal_strip

    monkeypatch.setenv("KASMINA_COMMAND_KEYS", str(tmp_path / "operator"))
    key = provision_device_key(tmp_path / "dev-a", "a")
    mv = np.sin(np.linspace(0, 20, 1440)).astype(np.float32)  # 4 s at 360 Hz: thinned to <= 1200 points
    store.write({"fleet": "f1", "device": "a", "strip": seal_strip(key, "a", "n-1", mv, 360.0)})
    forged = seal_strip(b"\x00" * 32, "a", "n-2", mv, 360.0)
    store.write({"fleet": "f1", "device": "a", "strip": forged})
    store.flush()
    good, bad = queries.device(store.engine, "a")["strips"]  # type: ignore[index]
    opened = queries.open_strip(store.engine, "a", good["id"])
    assert opened is not None and opened["step"] == 2 and len(opened["mv"]) == 720
    assert np.allclose(opened["mv"], mv[::2], atol=0.005)  # 5 uV steps on the wire
    refused = queries.open_strip(store.engine, "a", bad["id"])
    assert refused is not None and "does not authenticate" in refused["error"] and "mv" not in refused
    assert queries.open_strip(store.engine, "a", 999) is None
