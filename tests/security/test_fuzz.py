"""Item 7, small: every parser exposed to the outside, fed generated malformed input (the benchmark's targets,
`tools/bench_fuzz.py`, a few hundred inputs each here; 100,000 each there): no crash, no hang, one-line refusals.
Each target also gets the inputs that found real bugs once (kept as regressions)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))

import bench_fuzz  # noqa: E402

from kasmina_edge.contracts import codec  # noqa: E402
from kasmina_edge.contracts.errors import FrameError  # noqa: E402

COUNT = 150


@pytest.fixture(scope="module")
def targets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bench_fuzz.Target]:
    return {t.name: t for t in bench_fuzz.all_targets(tmp_path_factory.mktemp("fuzz"))}


@pytest.mark.parametrize("name", ["codec-binary", "codec-json", "command", "bundle", "csv", "wfdb", "mqtt"])
def test_no_crash_no_hang_one_line_refusals(targets: dict[str, bench_fuzz.Target], name: str) -> None:
    out = bench_fuzz.fuzz(targets[name], COUNT)
    assert out.inputs >= COUNT * 0.9, out  # hypothesis may stop a little short when it runs out of new inputs
    assert out.findings == 0, out.samples
    assert out.ok + out.refused == out.inputs
    if targets[name].refusals:
        assert out.refused > 0  # the generator does reach the refusals (it is not feeding only valid input)


def test_the_fuzzer_reports_a_crash() -> None:
    """A target that crashes on some inputs is counted as findings, with the input kept."""
    from hypothesis import strategies as st

    def fragile(b: bytes) -> None:
        if b[:1] == b"x":
            raise IndexError("boom")
        if b[:1] == b"y":
            raise FrameError("two\nlines")

    out = bench_fuzz.fuzz(bench_fuzz.Target("t", "t", st.sampled_from([b"x", b"y", b"z"]), fragile, (FrameError,)), 60)
    kinds = {s["kind"] for s in out.samples}
    assert out.findings > 0 and {"crash", "multi-line or empty refusal"} <= kinds


def test_regressions_found_by_fuzzing() -> None:
    """A JSON frame whose type is an object (TypeError: unhashable) is one line now; see also the monitor's
    uplink without records from an unknown device (it asserted)."""
    with pytest.raises(FrameError, match="unknown JSON frame type"):
        codec.from_json(b'{"version": 1, "type": {"a": 1}}')
    from kasmina_edge.net.monitor import Monitor
    from kasmina_edge.net.packet import Uplink

    up = Uplink("patch-01", "lorawan-eu868-dr0", 3, 1.0, 2.0, 0.3, b"\x20\x01" + bytes(18), 1.8e9)
    assert Monitor().ingest("kasmina/f1/patch-01/telemetry/batch", up.to_bytes()) == []


def test_a_zip_entry_without_a_name_is_one_line(tmp_path: Path) -> None:
    """Found by bench_fuzz (bundle): zipfile's ZipInfo.is_dir raised IndexError on an empty entry name."""
    import io
    import zipfile

    from kasmina_edge.contracts.bundle import BundleError, init_keys, read_bundle

    init_keys(tmp_path / "keys")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(zipfile.ZipInfo(""), b"x")
    (tmp_path / "b.kedge").write_bytes(buf.getvalue())
    with pytest.raises(BundleError, match="an entry of the zip has no name"):
        read_bundle(tmp_path / "b.kedge", tmp_path / "keys")
