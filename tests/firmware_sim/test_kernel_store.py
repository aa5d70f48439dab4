"""The device's one kernel store: `flash` and OTA write it with the same checks, boot reads it.

A seed sent over the air is live at the next boot (its lifecycle in the run log, predictions that differ from the
base's); one the host culled is stored and refused by the runtime; refusals are one line (key, base, target,
site, grid, downgrade, no base); the very same bundle again writes nothing; a power cut anywhere in an install
leaves the store as it was; the older layouts (store.json, raw .bin index) are migrated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from ota_rig import make_rig, run_until, serve
from seed_fixtures import SEED_ECG, SEED_KERNEL, designed_base, grid_kernel_bundle, seed_bundle

from firmware_sim.device import EmulatedDevice, FlashRefused, open_device
from firmware_sim.kernel_store import FORMAT, INDEX, LEGACY_LIST, KernelStore, KernelStoreError
from firmware_sim.runner import RunOptions, run_stream
from firmware_sim.storage import FlashStorage, PowerCut
from kasmina_edge.contracts.bundle import init_keys, load_public_key
from kasmina_edge.contracts.events import BeatClassified
from kasmina_edge.ecg.sources import open_source


@dataclass(frozen=True)
class Seeds:
    keys: Path
    base: Path
    seed: Path  # FOSSILIZED on the host, v1
    seed_v2: Path  # a re-grown seed for the same site, v2
    culled: Path  # the host's G4 culled it
    other_base: Path  # for another checkpoint
    other_target: Path
    bad_site: Path  # a kernel at site 5 of a two-site base
    foreign: Path  # signed by a key the device does not trust


@pytest.fixture(scope="module")
def seeds(bundles: Path, tmp_path_factory: pytest.TempPathFactory) -> Seeds:
    root = tmp_path_factory.mktemp("seeds")
    keys = bundles / "keys"
    base = designed_base(bundles, root / "base.kedge")
    other_keys = root / "other-keys"
    init_keys(other_keys)
    return Seeds(
        keys,
        base,
        seed_bundle(base, keys, root / "seed.kedge"),
        seed_bundle(base, keys, root / "seed-v2.kedge", version=2, shift=0.15),
        seed_bundle(base, keys, root / "culled.kedge", stage="CULLED", name="culled_s1"),
        seed_bundle(base, keys, root / "other-base.kedge", checkpoint="2" * 64),
        seed_bundle(base, keys, root / "other-target.kedge", target="linux-arm"),
        seed_bundle(base, keys, root / "bad-site.kedge", site=5),
        _resign(seed_bundle(base, keys, root / "foreign.kedge"), keys, other_keys),
    )


def _resign(path: Path, keys: Path, other: Path) -> Path:
    """The same bundle, signed with ``other`` keys."""
    from kasmina_edge.contracts.bundle import read_bundle, write_bundle

    b = read_bundle(path, keys)
    m = b.manifest.model_dump(mode="json", by_alias=True)
    write_bundle(path, m, {name: b.files[name] for name in b.manifest.files}, other)
    return path


def _device(seeds: Seeds, name: str = "patch", storage: FlashStorage | None = None) -> EmulatedDevice:
    dev = open_device(f"emu://{name}")
    assert isinstance(dev, EmulatedDevice)
    if storage is not None:
        dev = EmulatedDevice(dev.address, storage)
    if not dev.exists:
        dev.flash(seeds.base, seeds.keys)
    return dev


def _run(dev: EmulatedDevice, log: Path) -> tuple[list[BeatClassified], list[dict[str, Any]]]:
    """Stream the seed's ECG through a fresh boot: (beats, every other event of the run log)."""
    summary = run_stream(dev, open_source(SEED_ECG), out=log, options=RunOptions(keep_predictions=True))
    events = [json.loads(x) for x in log.read_text().splitlines()]
    return summary.predictions, [e for e in events if e.get("event") != "beat"]


def _mine(events: list[dict[str, Any]], kernel: str = SEED_KERNEL) -> list[dict[str, Any]]:
    return [e for e in events if kernel in (e.get("kernel"), e.get("seed_id"))]


def test_a_seed_sent_over_lorawan_is_stored_once_and_live_at_the_next_boot(
    devices: Path, tmp_path: Path, seeds: Seeds
) -> None:
    """ota -> the one store -> boot reads it: lifecycle to FOSSILIZED, predictions that differ from the base's."""
    rig = make_rig(devices.parent, seeds.base, seeds.keys, "lorawan-eu868-dr0")
    base_beats, base_events = _run(rig.device, tmp_path / "base.jsonl")
    assert not _mine(base_events)
    server, args, _ = serve(rig, seeds.seed, 21, seeds.keys)
    assert args["kind"] == "kernels" and args["mode"] == "fragments"
    run_until(rig, 6 * 3600, step=5.0, until=lambda: server.final is not None)  # the report came back
    fin = rig.ota.finished
    assert fin is not None and fin["status"] == "installed", fin
    assert fin["kernels"] == [SEED_KERNEL] and fin["live"] == "next boot"
    assert server.final is not None and server.final["status"] == "installed"
    # one store, one format: the entry says how it came; no other store file exists
    store = KernelStore(rig.device.storage)
    (entry,) = store.entries()
    assert entry["via"] == "ota" and entry["kernels"] == [SEED_KERNEL]
    folder = rig.device.root / "kernels"
    assert sorted(p.name for p in folder.iterdir()) == sorted(["index.json", entry["file"]])
    assert json.loads((folder / "index.json").read_text())["format"] == FORMAT
    beats, events = _run(rig.device, tmp_path / "seeded.jsonl")
    mine = _mine(events)
    assert any(e["event"] == "kernel_installed" and e["bundle"] == entry["bundle_id"] for e in mine)
    assert [e["to"] for e in mine if e["event"] == "transition"][-1] == "FOSSILIZED", mine
    assert len(beats) == len(base_beats) > 200
    differ = [a for a, b in zip(base_beats, beats, strict=True) if a.label != b.label]
    live_at = next(e["t"] for e in mine if e["event"] == "kernel_installed")
    assert len(differ) >= 5 and all(d.t >= live_at for d in differ)  # only once the seed is live
    assert {d.label for d in differ} == {
        "N"
    }  # the seed moved the S threshold: borderline N beats turn S


def test_flash_writes_the_same_store_and_replaces_the_seed_of_the_same_site(
    devices: Path, seeds: Seeds
) -> None:
    dev = _device(seeds)
    r1 = dev.flash(seeds.seed, seeds.keys)
    assert r1.kernels is not None and r1.kernels.sites == [1] and r1.kernels.erase_blocks >= 1
    assert any("next boot" in n for n in r1.notes)
    again = dev.flash(seeds.seed)  # the very same bundle: nothing written, no erase
    assert again.kernels is not None and again.kernels.unchanged and again.kernels.erase_blocks == 0
    r2 = dev.flash(seeds.seed_v2)
    assert r2.kernels is not None and r2.kernels.replaced == [r1.bundle_id]
    store = dev.kernel_store()
    assert [e["bundle_id"] for e in store.entries()] == [r2.bundle_id]
    assert not (store.folder / f"{r1.bundle_id}.kedge").exists()  # the replaced bundle is gone
    with pytest.raises(KernelStoreError, match=r"kernel bundle version 1 is older than .* security counter 2 \(no downgrades"):
        dev.flash(seeds.seed)
    boot = dev.boot()
    bundles, skipped = dev.kernel_bundles(boot.bundle)
    assert [b.manifest.bundle_id for b in bundles] == [r2.bundle_id] and not skipped


def test_every_refusal_is_one_line_and_leaves_the_store_as_it_was(devices: Path, seeds: Seeds) -> None:
    with pytest.raises(FlashRefused, match="holds no base to add kernels to"):
        open_device("emu://empty").flash(seeds.seed, seeds.keys)
    dev = _device(seeds)
    dev.flash(seeds.seed)
    before = (dev.root / INDEX).read_bytes()
    cases = [
        (seeds.other_base, "kernel bundle is for base 222222222222"),
        (seeds.other_target, "kernel bundle is built for target linux-arm; emu://patch runs x86"),
        (seeds.bad_site, r"sits at site 5; the base has sites \[0, 1\]"),
    ]
    for bundle, message in cases:
        with pytest.raises(FlashRefused, match=message):
            dev.flash(bundle)
    with pytest.raises(FlashRefused, match="trusts signing key"):
        dev.flash(seeds.foreign, seeds.foreign.parent / "other-keys")
    with pytest.raises(FlashRefused, match="announced as kernels"):
        dev.flash(seeds.base, expect_kind="kernels")
    assert (dev.root / INDEX).read_bytes() == before
    # the store's own signature check (OTA hands it the trusted key, whatever signed the bundle)
    with pytest.raises(KernelStoreError, match="kernel bundle refused: .*signature"):
        dev.kernel_store().install(seeds.foreign, load_public_key(seeds.keys), dev.boot().bundle)
    assert (dev.root / INDEX).read_bytes() == before


def test_a_kernel_whose_grid_differs_from_the_site_grid_is_refused(
    devices: Path, bundles: Path, keys: Path, tmp_path: Path
) -> None:
    dev = open_device("emu://tflite")
    dev.flash(bundles / "linux-arm-v1.kedge", keys)
    ok = dev.flash(grid_kernel_bundle(bundles, tmp_path / "ok.kedge"))
    assert ok.kernels is not None and ok.kernels.kernels == ["patient_s0"]
    with pytest.raises(FlashRefused, match="int8 grid scale=.* differs from the base's site grid"):
        dev.flash(grid_kernel_bundle(bundles, tmp_path / "bad.kedge", grid_factor=1.5))


def test_a_seed_the_host_culled_is_stored_but_never_goes_live(
    devices: Path, tmp_path: Path, seeds: Seeds
) -> None:
    dev = _device(seeds)
    result = dev.flash(seeds.culled)
    assert any("ended CULLED on the host" in n for n in result.notes)
    beats, events = _run(dev, tmp_path / "run.jsonl")
    mine = _mine(events, "culled_s1")
    assert [e["event"] for e in mine] == ["kernel_refused"] and "culled on the host" in mine[0]["reason"]
    assert {b.label for b in beats} <= {"N", "S"} and not any(b.active for b in beats)


@pytest.mark.parametrize("cut", ["bundle", "index"])
def test_a_power_cut_in_an_install_keeps_the_stored_seed(
    devices: Path, tmp_path: Path, seeds: Seeds, cut: str
) -> None:
    dev = _device(seeds)
    first = dev.flash(seeds.seed)
    size = seeds.seed_v2.stat().st_size
    cut_after = 100 if cut == "bundle" else size + 50  # in the bundle file, or in the index written after it
    with pytest.raises(PowerCut):
        _device(seeds, storage=FlashStorage(dev.root, cut_after_bytes=cut_after)).flash(seeds.seed_v2)
    fresh = _device(seeds)
    boot = fresh.boot()  # cleans up the partials
    bundles, skipped = fresh.kernel_bundles(boot.bundle)
    assert [b.manifest.bundle_id for b in bundles] == [first.bundle_id] and not skipped
    done = fresh.flash(seeds.seed_v2)  # and the update goes through afterwards
    assert done.kernels is not None and done.kernels.replaced == [first.bundle_id]
    names = sorted(p.name for p in fresh.kernel_store().folder.iterdir())
    assert names == sorted(["index.json", f"{done.bundle_id}.kedge"])  # nothing unnamed left behind


def test_the_older_layouts_are_migrated(devices: Path, seeds: Seeds) -> None:
    dev = _device(seeds)
    first = dev.flash(seeds.seed)
    store = dev.kernel_store()
    (entry,) = store.entries()
    # rewrite it as the two layouts before one store: the flash path's store.json, the OTA path's raw index
    legacy = {
        k: entry[k] for k in ("bundle_id", "file", "base", "sites", "kernels", "bytes", "sha256", "record")
    }
    dev.storage.write_json(LEGACY_LIST, [legacy])
    worn = [3] * 64  # the OTA store's ring was 64 blocks: its wear is kept, the ring grows to this store's
    dev.storage.write_json(
        INDEX, {"version": 4, "kernels": {"k0": {}}, "erase_counts": worn, "next_block": 7}
    )
    dev.storage.write_atomic("kernels/k0.bin", b"raw kernel, no signature")
    bundles, _ = dev.kernel_bundles(dev.boot().bundle)
    assert [b.manifest.bundle_id for b in bundles] == [first.bundle_id]  # boot reads the old list already
    done = dev.flash(seeds.seed_v2)
    idx = json.loads((dev.root / INDEX).read_text())
    assert idx["format"] == FORMAT and [e["bundle_id"] for e in idx["entries"]] == [done.bundle_id]
    assert (
        len(idx["erase_counts"]) == store.sectors and idx["erase_counts"][:64] != [3] * 64
    )  # blocks 7.. erased
    assert sum(idx["erase_counts"]) == 3 * 64 + done.kernels.erase_blocks  # type: ignore[union-attr]
    names = sorted(p.name for p in store.folder.iterdir())
    assert names == sorted(["index.json", f"{done.bundle_id}.kedge"])  # store.json, the .bin, v1: gone


def test_a_bundle_the_store_cannot_hold_is_refused(devices: Path, tmp_path: Path, seeds: Seeds) -> None:
    dev = _device(seeds)
    base = dev.boot().bundle
    key = load_public_key(seeds.keys)
    tiny = KernelStore(dev.storage, sectors=1)  # one 4 KB erase block
    tiny.install(seeds.seed, key, base)
    site0 = seed_bundle(seeds.base, seeds.keys, tmp_path / "s0.kedge", site=0, name="patient_s0", version=2)
    with pytest.raises(
        KernelStoreError, match=r"does not fit the kernel store: 1 of its 1 blocks hold other"
    ):
        tiny.install(site0, key, base)  # another site: it replaces nothing, and there is no room beside
    assert [e["kernels"] for e in tiny.entries()] == [[SEED_KERNEL]]
