"""OTA on the emulated device: chunked pull with resume and tamper refusal, LoRaWAN FEC fragments through 20 %
loss, verify-then-flash into the inactive A/B slot with probation or rollback, kernel-only updates into the
kernel store with erase-cycle counting, and forged offers refused."""

from __future__ import annotations

import hashlib
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from ota_rig import make_rig, run_until, serve

from firmware_sim.kernel_store import KernelStoreError
from kasmina_edge.contracts.bundle import init_keys, load_public_key, read_bundle, write_bundle
from kasmina_edge.contracts.manifest import SCHEMA
from kasmina_edge.core import catalog
from kasmina_edge.net.audit import verify
from kasmina_edge.net.fec import FragmentDecoder, FragmentPlan, encode_fragments
from kasmina_edge.net.link import FaultInjector, LossBurst
from kasmina_edge.net.ota import plan_transfer

CHECKPOINT = "ab" * 32


def _manifest(version: int, kind: str = "full", checkpoint: str = CHECKPOINT) -> dict[str, Any]:
    kernel = {
        "name": "k0",
        "kind": "kernel",
        "format": "tflite-int8",
        "file": "artifacts/k0.tflite",
        "sha256": "",
        "bytes": 0,
        "site": 0,
        "blueprint": "bottleneck_adapter",
    }
    segment = {
        "name": "seg0",
        "kind": "segment",
        "format": "tflite-int8",
        "file": "artifacts/seg0.tflite",
        "sha256": "",
        "bytes": 0,
    }
    return {
        "schema": SCHEMA,
        "kind": kind,
        "version": version,
        "target": "cortex-m",
        "profile": "stm32h743",
        "format": "tflite-int8",
        "model": {"checkpoint_sha256": checkpoint},
        "chain": None if kind == "kernels" else {"segments": ["seg0"], "default_active": {}},
        "artifacts": [kernel] if kind == "kernels" else [segment, kernel],
        "provenance": {"kasmina_edge": "0.1.0", "built_at": "2026-11-22T00:00:00Z"},
    }


@dataclass
class Bundles:
    keys: Path
    v1: Path
    v2: Path
    kernels: Path
    foreign: Path  # signed by a key the device does not trust


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Bundles:
    root = tmp_path_factory.mktemp("ota-bundles")
    keys, other = root / "keys", root / "other-keys"
    init_keys(keys)
    init_keys(other)
    rng = random.Random(0)
    seg = bytes(rng.randrange(256) for _ in range(30_000))
    kern = bytes(rng.randrange(256) for _ in range(6_000))  # a 6 KB seed kernel
    files = {"artifacts/seg0.tflite": seg, "artifacts/k0.tflite": kern}
    out = Bundles(keys, root / "v1.kedge", root / "v2.kedge", root / "k3.kedge", root / "foreign.kedge")
    write_bundle(out.v1, _manifest(1), files, keys)
    write_bundle(out.v2, _manifest(2), {**files, "artifacts/k0.tflite": kern[::-1]}, keys)
    write_bundle(out.kernels, _manifest(3, "kernels"), {"artifacts/k0.tflite": kern[1:] + b"x"}, keys)
    write_bundle(out.foreign, _manifest(5), files, other)
    return out


def test_fec_recovers_from_20_percent_fragment_loss_without_retries() -> None:
    data = os.urandom(6000)
    plan = FragmentPlan.for_data(len(data), 48)
    frags = encode_fragments(data, plan)
    needed = []
    for seed in range(40):
        rng = random.Random(seed)
        dec = FragmentDecoder(plan)
        for i, f in enumerate(frags):
            if rng.random() >= 0.2 and dec.add(i, f):
                break
        assert dec.done, seed
        assert dec.data() == data
        needed.append(dec.received)
    assert max(needed) <= plan.n + 8  # a handful more than n


def test_chunked_ota_with_a_tampered_chunk_and_loss_flashes_boots_and_confirms(
    tmp_path: Path, bundles: Bundles
) -> None:
    rig = make_rig(
        tmp_path, bundles.v1, bundles.keys, "nb-iot", faults=FaultInjector([LossBurst(0, 120, 0.2)])
    )
    server, args, served = serve(rig, bundles.v2, 7, bundles.keys, tamper_first={3})
    run_until(rig, 600, until=lambda: rig.ota.finished is not None)
    assert rig.ota.finished is not None and rig.ota.finished["status"] == "probation_passed", rig.ota.finished
    assert rig.ota.refused_pieces >= 1 and served.count(3) >= 2  # refused, asked for again
    st = rig.device.state()
    assert st["active"] == "b" and st["version_counter"] == 2
    assert hashlib.sha256(bundles.v2.read_bytes()).hexdigest() == rig.device.slot_info("b")["sha256"]  # type: ignore[index]
    rig.net.advance(float("inf"))
    view = rig.net.monitor.devices["ota-dev"]
    assert view.last_ota is not None and view.last_ota["status"] == "probation_passed"
    assert [e["event"] for e in verify(rig.audit)] == ["accepted", "done"]
    assert args["mode"] == "chunks" and args["pieces"] == len(args["chunk_sha256"])
    assert server.final is not None and server.final["status"] == "probation_passed"


def test_chunked_ota_resumes_after_a_reboot(tmp_path: Path, bundles: Bundles) -> None:
    rig = make_rig(tmp_path, bundles.v1, bundles.keys, "wifi")
    _, args, _ = serve(rig, bundles.v2, 9, bundles.keys)
    run_until(rig, 600, step=0.5, until=lambda: len(rig.ota.have) >= args["pieces"] // 2)
    have_before = set(rig.ota.have)
    assert 0 < len(have_before) < args["pieces"]
    # power cycle: a new receiver on the same flash picks the transfer up
    again = make_rig(tmp_path, bundles.v1, bundles.keys, "wifi")
    assert again.ota.offer is not None and again.ota.have == have_before
    _, _, served = serve(again, bundles.v2, 9, bundles.keys)
    run_until(again, 600, step=0.5, until=lambda: again.ota.finished is not None)
    assert again.ota.finished is not None and again.ota.finished["status"] == "probation_passed"
    assert not set(served) & have_before  # only what was missing travelled again


def test_lora_fragments_through_20_percent_loss(tmp_path: Path, bundles: Bundles) -> None:
    profile = catalog.network("lorawan-eu868-dr5")
    rig = make_rig(
        tmp_path,
        bundles.v1,
        bundles.keys,
        "lorawan-eu868-dr5",
        faults=FaultInjector([LossBurst(30, 10 * 86400, 0.2)]),
    )
    server, args, _ = serve(rig, bundles.kernels, 11, bundles.keys)
    plan = plan_transfer(profile, args["bytes"])
    run_until(rig, 2 * 86400, step=5.0, until=lambda: rig.ota.finished is not None)
    fin = rig.ota.finished
    assert fin is not None and fin["status"] == "installed", fin
    assert rig.link.ledger.downlinks_lost > 0.1 * plan.pieces  # the loss was real
    assert fin["fragments_received"] < plan.pieces + plan.parity  # finished before the last parity fragment
    assert plan.estimate_s > 0 and "days" in plan.note


def test_forged_offer_and_foreign_bundle_are_refused_and_the_current_slot_keeps_running(
    tmp_path: Path, bundles: Bundles
) -> None:
    rig = make_rig(tmp_path, bundles.v1, bundles.keys, "wifi")
    other_keys = bundles.foreign.parent / "other-keys"
    forged, _, _ = serve(rig, bundles.foreign, 3, other_keys, key=bytes(range(1, 33)))  # forged: another key
    run_until(rig, 20)
    assert rig.ota.offer is None and verify(rig.audit)[-1]["reason"] == "bad_signature"
    rig.servers.remove(forged)
    serve(
        rig, bundles.foreign, 4, other_keys
    )  # genuinely offered, but the bundle is signed by an untrusted key
    run_until(rig, 300, step=0.5, until=lambda: rig.ota.finished is not None)
    assert rig.ota.finished is not None and rig.ota.finished["status"] == "refused"
    assert "signature does not verify" in rig.ota.finished["reason"]
    boot = rig.device.boot()
    assert boot.slot == "a" and boot.bundle.manifest.version == 1


def test_probation_failure_rolls_back(tmp_path: Path, bundles: Bundles) -> None:
    rig = make_rig(tmp_path, bundles.v1, bundles.keys, "wifi", probation=lambda boot: False)
    serve(rig, bundles.v2, 5, bundles.keys)
    run_until(rig, 300, step=0.5, until=lambda: rig.ota.finished is not None)
    assert rig.ota.finished is not None and rig.ota.finished["status"] == "rolled_back"
    assert rig.ota.finished["slot"] == "a" and rig.device.state()["version_counter"] == 1


def test_kernel_only_update_goes_to_the_kernel_store_and_counts_erase_cycles(
    tmp_path: Path, bundles: Bundles
) -> None:
    rig = make_rig(tmp_path, bundles.v1, bundles.keys, "wifi")
    serve(rig, bundles.kernels, 12, bundles.keys)
    run_until(rig, 300, step=0.5, until=lambda: rig.ota.finished is not None)
    fin = rig.ota.finished
    assert fin is not None and fin["status"] == "installed" and fin["kernels"] == ["k0"], fin
    assert fin["live"] == "next boot" and not fin["unchanged"]
    # the signed bundle is what the store keeps: its 4 KB blocks; rewriting the image slot would have erased more
    size, slot = bundles.kernels.stat().st_size, bundles.v1.stat().st_size
    assert (fin["erase_blocks"], fin["full_image_blocks"]) == (-(-size // 4096), -(-slot // 4096)), fin
    assert fin["erase_blocks"] < fin["full_image_blocks"]
    assert rig.device.state()["active"] == "a"  # the application image was not touched
    store = rig.device.kernel_store()
    assert store.kernels()["k0"]["version"] == 3 and store.kernels()["k0"]["via"] == "ota"
    counts = store.index()["erase_counts"]
    # the same update again (a new session): accepted, nothing written, no erase spent
    rig.ota.finished = None
    serve(rig, bundles.kernels, 13, bundles.keys)
    run_until(rig, 600, step=0.5, until=lambda: rig.ota.finished is not None)
    assert rig.ota.finished is not None and rig.ota.finished["unchanged"], rig.ota.finished
    assert rig.ota.finished["erase_blocks"] == 0 and store.index()["erase_counts"] == counts
    other_base = read_bundle(bundles.foreign, bundles.foreign.parent / "other-keys")
    other_base.manifest.model.__dict__["checkpoint_sha256"] = "cd" * 32
    with pytest.raises(KernelStoreError, match="kernel bundle is for base"):
        store.install(bundles.kernels, load_public_key(bundles.keys), other_base)


def test_plan_transfer_per_link() -> None:
    for name in ("lorawan-eu868-dr0", "lorawan-us915-dr3", "nb-iot", "wifi"):
        plan = plan_transfer(catalog.network(name), 6000)
        assert plan.pieces * plan.piece_bytes >= 6000 and plan.estimate_s > 0
    dr0 = plan_transfer(catalog.network("lorawan-eu868-dr0"), 6000)
    assert dr0.mode == "fragments" and dr0.piece_bytes == 46
    assert plan_transfer(catalog.network("wifi"), 6000).estimate_s < 1.0
