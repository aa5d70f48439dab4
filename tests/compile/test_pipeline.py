"""The build plan (fast: every check a user can trip) and whole builds (slow) on the host's tiny model."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from kasmina_edge.compile.pipeline import BuildRequest, build, plan
from kasmina_edge.core.build_errors import NoCheckpointError, ProfileLimitError, UnsupportedBlueprintError


def _write_checkpoint(path: Path, train: bool = False) -> None:
    from kasmina_edge.host.experiment import save_checkpoint
    from kasmina_edge.host.model import build_model

    model = build_model("tiny", seed=0)
    if train:  # a few steps on synthetic patients, so argmax is not decided by near-ties
        from kasmina_edge.ecg.dataset import synthetic_patients
        from kasmina_edge.host.data import beats
        from kasmina_edge.host.train import class_weights

        ds = beats(synthetic_patients(6, 2.0, seed=5))
        x, rr, y = (torch.from_numpy(a) for a in (ds.windows, ds.rr, ds.labels))
        model.head.set_rr_stats(rr)
        opt = torch.optim.Adam(model.host_parameters(), lr=5e-3)
        loss_fn = torch.nn.CrossEntropyLoss(weight=class_weights(ds.labels))
        g = torch.Generator().manual_seed(0)
        for _ in range(150):
            idx = torch.randint(0, len(y), (64,), generator=g)
            loss = loss_fn(model(x[idx], rr[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    save_checkpoint(
        path,
        {
            "kind": "base",
            "model_config": model.config.to_dict(),
            "state": model.state_dict(),
            "experiment_id": "test",
        },
    )


def _write_library(folder: Path, blueprint: str = "bottleneck_adapter", site_index: int = 1) -> None:
    from kasmina_edge.host.blueprints import create_blueprint
    from kasmina_edge.host.model import get_config
    from kasmina_edge.host.seed_library import LibraryEntry, SeedLibrary

    cfg = get_config("tiny")
    site = cfg.site_names[site_index]
    c, length = cfg.site_shapes()[site]
    torch.manual_seed(1)
    module = create_blueprint(blueprint, c, length)
    with torch.no_grad():  # function-preserving at birth: give it a real (small) effect
        for p in module.parameters():
            p.add_(0.05 * torch.randn_like(p))
    params = sum(p.numel() for p in module.parameters())
    key = f"test-{blueprint}@{site}"
    lib = SeedLibrary(meta={"model_config": cfg.to_dict()})
    lib.entries[key] = LibraryEntry(
        key=key, condition="test", tags=[], site=site, site_index=site_index, channels=c, length=length,
        blueprint=blueprint, blueprint_params={}, grafting="none", intensity=1.0, param_count=params,
        param_fraction=0.01, macs=0, baseline_val=0.5, seed_val=0.5, gain=0.0, clean_host=None, clean_seed=None,
        seed_id=f"{site}/all",
    )  # fmt: skip
    lib.states[key] = module.state_dict()
    lib.save(folder)


@pytest.fixture(scope="module")
def host_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("host")
    _write_checkpoint(root / "base.pt")
    _write_library(root / "seeds")
    return root / "base.pt", root / "seeds"


def test_missing_checkpoint_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(NoCheckpointError, match=r"nope\.pt: checkpoint not found"):
        plan(BuildRequest(checkpoint=tmp_path / "nope.pt", seeds=None, target="edgetpu"))


def test_missing_library_names_the_folder(host_files, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ckpt, _ = host_files
    (tmp_path / "empty").mkdir()
    with pytest.raises(NoCheckpointError, match="library.json: seed library not found"):
        plan(BuildRequest(checkpoint=ckpt, seeds=tmp_path / "empty", target="x86"))


def test_4_bit_on_an_8_bit_only_target_names_the_limit(host_files) -> None:  # type: ignore[no-untyped-def]
    ckpt, seeds = host_files
    with pytest.raises(UnsupportedBlueprintError, match=r"--bits 4: target edgetpu allows 8-bit only"):
        plan(BuildRequest(checkpoint=ckpt, seeds=seeds, target="edgetpu", bits=4))


@pytest.mark.parametrize("headroom", [0.5, 32.0, float("nan")])
def test_site_headroom_outside_its_limits_names_them(host_files, headroom: float) -> None:  # type: ignore[no-untyped-def]
    from kasmina_edge.core.build_errors import BuildError

    ckpt, _ = host_files
    with pytest.raises(BuildError, match=r"--site-headroom .*: must be between 1 \(none\) and 16"):
        plan(BuildRequest(checkpoint=ckpt, seeds=None, target="edgetpu", site_headroom=headroom))
    steps = plan(BuildRequest(checkpoint=ckpt, seeds=None, target="edgetpu", site_headroom=2.0)).steps
    assert any("2x head-room for patient kernels" in step for step in steps)


def test_a_blueprint_the_target_cannot_run(host_files, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ckpt, _ = host_files
    _write_library(tmp_path / "att", blueprint="mini_attention", site_index=2)
    with pytest.raises(
        UnsupportedBlueprintError,
        match=r"seed test-mini_attention@site2: blueprint mini_attention cannot run on target edgetpu",
    ):
        plan(BuildRequest(checkpoint=ckpt, seeds=tmp_path / "att", target="edgetpu"))
    assert (
        plan(BuildRequest(checkpoint=ckpt, seeds=tmp_path / "att", target="x86")).kernels[0].blueprint
        == "mini_attention"
    )


def test_a_model_too_big_for_the_profile_flash(host_files, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from kasmina_edge.core import catalog

    real = catalog.hardware

    def small(name: str, data_dir: Path | None = None):  # type: ignore[no-untyped-def]
        prof = real(name, data_dir)
        return prof.model_copy(update={"memory": prof.memory.model_copy(update={"flash_bytes": 4096})})

    monkeypatch.setattr(catalog, "hardware", small)
    ckpt, seeds = host_files
    with pytest.raises(
        ProfileLimitError, match=r"model too big for stm32h743: .* exceed its 4,096 B of flash"
    ):
        plan(BuildRequest(checkpoint=ckpt, seeds=seeds, target="cortex-m"))


def test_plan_lists_steps_and_pending(host_files, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("KASMINA_KEYS_DIR", str(tmp_path / "no-keys"))
    ckpt, seeds = host_files
    p = plan(BuildRequest(checkpoint=ckpt, seeds=seeds, target="cortex-m", bits=4))
    assert [k.site for k in p.kernels] == [1] and p.format == "tflite-int8"
    assert any("TFLite Micro" in s for s in p.steps) and any("model_data.cc" in s for s in p.steps)
    assert any("Brevitas QAT w4a8" in s for s in p.steps)
    assert any(x.startswith("signing: no signing key") and "keys init" in x for x in p.pending)


def test_build_without_a_signing_key_stops_before_any_work(host_files, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from kasmina_edge.contracts.bundle import SigningKeyError

    monkeypatch.setenv("KASMINA_KEYS_DIR", str(tmp_path / "no-keys"))
    ckpt, seeds = host_files
    with pytest.raises(SigningKeyError, match="keys init"):
        build(BuildRequest(checkpoint=ckpt, seeds=seeds, target="x86", out=tmp_path / "x.kedge"))
    assert not (tmp_path / "x.kedge").exists()


def _app() -> typer.Typer:
    from kasmina_edge.cli import build as build_cli

    app = typer.Typer()
    app.callback()(lambda: None)
    build_cli.register(app)
    return app


def test_cli_explain_prints_the_plan(host_files) -> None:  # type: ignore[no-untyped-def]
    ckpt, seeds = host_files
    res = CliRunner().invoke(
        _app(),
        ["build", "--checkpoint", str(ckpt), "--seeds", str(seeds), "--target", "edgetpu", "--explain"],
    )
    assert res.exit_code == 0, res.output
    assert "build plan" in res.output and "segment_4" in res.output and "edgetpu_compiler" in res.output


def test_cli_unknown_target_is_a_user_error(host_files) -> None:  # type: ignore[no-untyped-def]
    from kasmina_edge.contracts.errors import KasminaError

    ckpt, _ = host_files
    res = CliRunner().invoke(_app(), ["build", "--checkpoint", str(ckpt), "--target", "gpu", "--explain"])
    assert isinstance(res.exception, KasminaError) and "--target" in str(res.exception)


# ---------------------------------------------------------------------------------- slow


@pytest.fixture(scope="module")
def trained_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    from kasmina_edge.contracts.bundle import init_keys

    root = tmp_path_factory.mktemp("trained")
    _write_checkpoint(root / "base.pt", train=True)
    _write_library(root / "seeds")
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
