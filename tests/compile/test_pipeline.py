"""The driver: a build stops before any work without a signing key, `build --explain` prints the plan,
importing it stays light, and whole builds (slow) on the host's tiny model write consistent bundles."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from host_files import write_checkpoint, write_library

from kasmina_edge.compile.pipeline import BuildRequest, build


@pytest.fixture(scope="module")
def host_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("host")
    write_checkpoint(root / "base.pt")
    write_library(root / "seeds")
    return root / "base.pt", root / "seeds"


def test_build_without_a_signing_key_stops_before_any_work(host_files, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from kasmina_edge.contracts.bundle import SigningKeyError

    monkeypatch.setenv("KASMINA_KEYS_DIR", str(tmp_path / "no-keys"))
    ckpt, seeds = host_files
    with pytest.raises(SigningKeyError, match="keys init"):
        build(BuildRequest(checkpoint=ckpt, seeds=seeds, target="x86", out=tmp_path / "x.kedge"))
    assert not (tmp_path / "x.kedge").exists()


def test_importing_the_driver_stays_light() -> None:
    """The CLI imports the build lazily, but `build --explain` and the plan must not pay for torch or the
    converters at import time: every stage imports them inside its functions."""
    import subprocess
    import sys

    code = "import sys, kasmina_edge.compile.pipeline; print(sorted({'torch', 'onnx', 'onnxruntime', 'litert_torch', 'brevitas'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ---------------------------------------------------------------------------------- slow


@pytest.fixture(scope="module")
def trained_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    from kasmina_edge.contracts.bundle import init_keys

    root = tmp_path_factory.mktemp("trained")
    write_checkpoint(root / "base.pt", train=True)
    write_library(root / "seeds")
    init_keys(root / "keys")
    return root / "base.pt", root / "seeds", root / "keys"


def _bundle(path: Path, keys: Path) -> tuple[dict, dict[str, bytes]]:  # type: ignore[type-arg]
    """Verify with the contracts' reader (signature, every hash), then hand back plain data."""
    from kasmina_edge.contracts.bundle import read_bundle

    b = read_bundle(path, keys)
    with zipfile.ZipFile(path) as z:
        manifest = json.loads(z.read("manifest.json"))
    return manifest, b.files


@pytest.mark.slow
@pytest.mark.parametrize("target", ["edgetpu", "cortex-m", "x86"])
def test_whole_build_writes_a_consistent_bundle(trained_files, tmp_path: Path, target: str) -> None:  # type: ignore[no-untyped-def]
    from kasmina_edge.core.tflite_graph import run_batched

    ckpt, seeds, keys = trained_files
    req = BuildRequest(
        checkpoint=ckpt,
        seeds=seeds,
        keys=keys,
        target=target,
        out=tmp_path / f"{target}.kedge",
        heldout_patients=4,
        parity_windows=600,
    )
    result = build(req)
    manifest, files = _bundle(result.bundle, keys)  # type: ignore[arg-type]
    for a in manifest["artifacts"]:  # models, the report and firmware sources: every one as hashed
        assert hashlib.sha256(files[a["file"]]).hexdigest() == a["sha256"], a["name"]
    models = [a for a in manifest["artifacts"] if a["kind"] in ("segment", "kernel")]
    assert [a["name"] for a in models][:5] == [f"segment_{i}" for i in range(5)]
    assert len(models) == 6 and manifest["chain"]["default_active"] == {
        "1": "kernel_s1_test-bottleneck_adapter_site1"
    }
    assert any(a["kind"] == "report" for a in manifest["artifacts"])
    for a in models:
        data = files[a["file"]]
        ref = np.load(io.BytesIO(files[a["reference"]]))
        if a["format"] == "tflite-int8":  # the artifact reproduces its reference vectors bit for bit
            ins = [ref[f"in{i}"] for i in range(len(a["inputs"]))]
            assert np.array_equal(run_batched(data, ins)[0], ref["out"])
    rep = result.report
    assert rep.cuts_checked == 4 + 2
    assert all(r.argmax_agreement >= 0.99 for r in rep.accuracy)
    assert manifest["parity"] == {**manifest["parity"], "ok": True, "missed": []} and not result.parity_misses
    if target == "edgetpu":
        assert rep.target_mapping["ops_cpu"] == 0 and rep.target_mapping["fits_cache"]
        assert any("edgetpu_compiler" in p for p in manifest["pending"])
    if target == "cortex-m":
        assert "firmware/model_data.cc" in files and rep.memory["sram_bytes"] <= rep.memory["sram_limit"]
        assert all(v["ok"] for v in rep.memory["micro_parity"].values())


@pytest.mark.slow
def test_4_bit_build_packs_kernels_that_unpack_to_what_was_tested(trained_files, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from kasmina_edge.core.pack4 import unpack_file

    ckpt, seeds, keys = trained_files
    req = BuildRequest(
        checkpoint=ckpt,
        seeds=seeds,
        keys=keys,
        target="x86",
        bits=4,
        out=tmp_path / "x86-4.kedge",
        heldout_patients=4,
        parity_windows=600,
        qat_steps=60,
    )
    result = build(req)
    manifest, files = _bundle(result.bundle, keys)  # type: ignore[arg-type]
    kernel = next(a for a in manifest["artifacts"] if a["kind"] == "kernel")
    assert kernel["packed"] and kernel["format"] == "onnx-qcdq"
    original = unpack_file(files[kernel["file"]], sha256=kernel["unpacked_sha256"])
    assert original == result.artifacts[kernel["name"]]
    assert len(files[kernel["file"]]) < len(original)
