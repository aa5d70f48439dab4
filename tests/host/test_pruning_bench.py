"""tools/bench_pruning.py end to end, small: seeds grown on corrupted digits, pruned, JSON written (slow)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import bench_pruning  # noqa: E402

pytest.importorskip("sklearn", reason="the pruning bench's digits come with scikit-learn (the research extra)")


@pytest.mark.slow
def test_bench_prunes_the_grown_seeds_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    rc = bench_pruning.main(["--json", str(out), "--epochs", "8", "--targets", "0.25,0.5", "--levels", "unit"])
    assert rc == 0
    data = json.loads(out.read_text())
    base, seeded = data["models"]
    assert seeded["seed_params"] > 0 and base["seed_params"] == 0
    assert {r["strategy"] for r in data["runs"]} == {"magnitude", "utilization", "gain_per_parameter", "random"}
    for r in data["runs"]:
        assert r["seed_params"] < seeded["seed_params"]  # every strategy removed something
        assert r["metric"] >= seeded["val"] - data["config"]["tolerance"] - 1e-9  # the gate held on val
        assert r["physical_params"] < seeded["physical_params"]  # compacted: the tensors themselves shrank
        if r["reached"]:
            assert r["saved_fraction"] >= r["target"]
