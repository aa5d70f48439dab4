"""The plan stage: every check a user can trip, before anything is converted (the host's tiny model)."""

from __future__ import annotations

from pathlib import Path

import pytest
from host_files import write_checkpoint, write_library

from kasmina_edge.compile.stages.plan import plan
from kasmina_edge.compile.stages.request import BuildRequest
from kasmina_edge.core.build_errors import NoCheckpointError, ProfileLimitError, UnsupportedBlueprintError


@pytest.fixture(scope="module")
def host_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("host")
    write_checkpoint(root / "base.pt")
    write_library(root / "seeds")
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
    write_library(tmp_path / "att", blueprint="mini_attention", site_index=2)
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


def test_the_library_is_read_by_the_hosts_reader(host_files, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """One reader of library.json: what `morph` writes and `build` reads cannot drift apart."""
    import json
    import shutil

    from kasmina_edge.host.seed_library import LibraryError

    ckpt, seeds = host_files
    (lib := tmp_path / "lib").mkdir()
    shutil.copy(seeds / "library.json", lib / "library.json")
    with pytest.raises(LibraryError, match=r"seeds\.pt: missing"):  # metadata without the weights it names
        plan(BuildRequest(checkpoint=ckpt, seeds=lib, target="x86"))
    shutil.copy(seeds / "seeds.pt", lib / "seeds.pt")
    body = json.loads((lib / "library.json").read_text())
    (lib / "library.json").write_text(json.dumps({**body, "format": 99}))
    with pytest.raises(LibraryError, match=r"library\.json: format 99, expected 1"):
        plan(BuildRequest(checkpoint=ckpt, seeds=lib, target="x86"))
    (lib / "library.json").write_text("{")
    with pytest.raises(LibraryError, match=r"library\.json:1: not JSON"):
        plan(BuildRequest(checkpoint=ckpt, seeds=lib, target="x86"))


def test_the_plan_sizes_kernels_at_their_bits(host_files) -> None:  # type: ignore[no-untyped-def]
    ckpt, seeds = host_files
    p8 = plan(BuildRequest(checkpoint=ckpt, seeds=seeds, target="x86", bits=8))
    p4 = plan(BuildRequest(checkpoint=ckpt, seeds=seeds, target="x86", bits=4))
    (k,) = p8.kernels
    assert k.parameters > 0 and p8.base_parameters > 0 and len(p8.sites) == 4
    assert p8.estimated_bytes - p4.estimated_bytes == k.parameters - k.parameters // 2  # 4-bit weights: half the bytes
    base = plan(BuildRequest(checkpoint=ckpt, seeds=None, target="x86"))
    assert base.kernels == [] and p8.estimated_bytes - base.estimated_bytes == k.parameters + 2500
