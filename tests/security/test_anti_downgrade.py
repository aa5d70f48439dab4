"""Item 1: versions, the device's monotonic security counters and its provisioned trust anchor.

Every refusal is checked on a *fresh* device object (the emulator's reboot: nothing carried in memory), after
an A/B switch, on both paths a bundle reaches a device (flash and OTA), for full images and kernel bundles.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from seed_fixtures import designed_base, seed_bundle

from firmware_sim.device import (
    DeviceAddress,
    DeviceError,
    DirDevice,
    EmulatedDevice,
    FlashRefused,
    open_device,
)
from firmware_sim.security import SECURE_FILE, SecureStore
from kasmina_edge.contracts.bundle import (
    BundleError,
    init_keys,
    key_id,
    load_public_key,
    next_version,
    read_bundle,
    record_signed_version,
    signed_versions,
    write_bundle,
)


def _dev(name: str = "patch-01") -> EmulatedDevice:
    """A new object each time: what survives is only what the device wrote to its storage."""
    return EmulatedDevice(DeviceAddress.parse(f"emu://{name}"))


def _confirmed(bundle: Path, keys: Path, name: str = "patch-01") -> EmulatedDevice:
    dev = _dev(name)
    dev.flash(bundle, keys)
    dev.boot()
    dev.confirm()
    return _dev(name)


def test_build_versions_count_up_per_target_and_are_recorded(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    init_keys(keys)
    assert next_version("edgetpu", keys) == 1
    record_signed_version("edgetpu", 1, "edgetpu-v1-aaa", keys)
    record_signed_version("edgetpu", 2, "edgetpu-v2-bbb", keys / "bundle-signing.key", kind="kernels")
    assert next_version("edgetpu", keys) == 3 and next_version("x86", keys) == 1
    record_signed_version("edgetpu", 1, "edgetpu-v1-rebuilt", keys)  # an explicit lower --version
    rec = signed_versions(keys)["edgetpu"]
    assert rec["newest"] == 2 and [b["version"] for b in rec["bundles"]] == [1, 2, 1]
    assert rec["bundles"][1]["kind"] == "kernels"
    (keys / "signed-versions.json").write_text("{nope")
    with pytest.raises(BundleError.__mro__[1], match="signed-versions.json: not a readable version record"):
        next_version("edgetpu", keys)


def test_equal_and_older_images_are_refused_after_reboot_and_ab_switch(devices: Path, bundles: Path, keys: Path) -> None:
    _confirmed(bundles / "edgetpu-v1.kedge", keys)
    dev = _dev()
    with pytest.raises(FlashRefused, match=r"bundle version 1 is equal to emu://patch-01's security counter 1"):
        dev.flash(bundles / "edgetpu-v1.kedge", keys)
    dev.flash(bundles / "edgetpu-v2.kedge", keys)  # to slot b
    rebooted = _dev()
    rebooted.boot()
    rebooted.confirm()
    assert _dev().describe()["active"] == "b"
    for older_or_equal in ("edgetpu-v1.kedge", "edgetpu-v2.kedge"):
        with pytest.raises(FlashRefused, match=r"security counter 2 \(no downgrades"):
            _dev().flash(bundles / older_or_equal, keys)
    # the counter is in secure storage, not in device.json: editing device.json changes nothing
    st = json.loads((devices / "patch-01" / "device.json").read_text())
    st["version_counter"] = 0
    (devices / "patch-01" / "device.json").write_text(json.dumps(st))
    with pytest.raises(FlashRefused, match="security counter 2"):
        _dev().flash(bundles / "edgetpu-v1.kedge", keys)
    assert SecureStore(_dev().storage).counter("image") == 2


def test_boot_never_falls_back_to_a_slot_below_the_counter(devices: Path, bundles: Path, keys: Path) -> None:
    _confirmed(bundles / "edgetpu-v1.kedge", keys)
    dev = _dev()
    dev.flash(bundles / "edgetpu-v2.kedge", keys)
    dev.boot()
    dev.confirm()  # v2 in slot b is good, counter 2; v1 still sits in slot a
    blob = devices / "patch-01" / "slot-b" / "bundle.kedge"
    blob.write_bytes(blob.read_bytes()[:-10])  # slot b rots
    with pytest.raises(DeviceError, match=r"slot a: version 1 is below the security counter 2"):
        _dev().boot()


def test_kernel_bundles_equal_or_older_refused_after_reboot_on_flash_and_ota(
    devices: Path, bundles: Path, keys: Path, tmp_path: Path
) -> None:
    base = designed_base(bundles, tmp_path / "base.kedge")
    seed1 = seed_bundle(base, keys, tmp_path / "s1.kedge", version=2)
    seed2 = seed_bundle(base, keys, tmp_path / "s2.kedge", version=3, shift=0.2)
    other_site = seed_bundle(base, keys, tmp_path / "s0.kedge", version=3, site=0, name="k_site0")
    dev = _dev("k")
    dev.flash(base, keys)
    dev.boot()
    dev.confirm()
    _dev("k").flash(seed1)
    assert _dev("k").flash(seed1).kernels.unchanged  # type: ignore[union-attr]  # the same bundle: a no-op
    _dev("k").flash(seed2)
    assert SecureStore(_dev("k").storage).counter("kernel") == 3
    with pytest.raises(FlashRefused, match=r"kernel bundle version 2 is older than emu://k's security counter 3"):
        _dev("k").flash(seed1)
    # another site, same version as the newest stored: equal is refused too
    with pytest.raises(FlashRefused, match=r"kernel bundle version 3 is equal to .* security counter 3"):
        _dev("k").flash(other_site)
    # the OTA path refuses it at the offer, before a byte moves
    from firmware_sim.ota import OtaReceiver, OtaRefused

    class _Link:
        def send_control(self, *a: object) -> None:
            pass

    rx = OtaReceiver(_dev("k"), _Link())
    offer = {"session": 1, "bundle_id": "x", "version": 3, "kind": "kernels", "bytes": 10, "sha256": "0" * 64,
             "mode": "fragments", "piece_bytes": 5, "pieces": 2, "parity": 1}
    with pytest.raises(OtaRefused, match="ota-offer: kernels version 3 is equal to .* security counter 3"):
        rx.on_offer(offer)
    with pytest.raises(OtaRefused, match="ota-offer: full version 1 is equal to .* security counter 1"):
        rx.on_offer({**offer, "kind": "full", "version": 1})


def test_first_flash_trusts_the_provisioned_key_never_the_bundles(
    devices: Path, bundles: Path, keys: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    attacker = tmp_path / "attacker"
    init_keys(attacker)
    forged = tmp_path / "forged.kedge"
    b = read_bundle(bundles / "edgetpu-v2.kedge", keys)
    m = b.manifest.model_dump(mode="json", by_alias=True)
    write_bundle(forged, {**m, "version": 99}, {n: b.files[n] for n in b.manifest.files}, attacker)
    # provisioned with --trust: a bundle signed by another key is refused, whatever --keys says
    dev = _dev("trusting")
    with pytest.raises(FlashRefused, match=r"--trust .* and --keys .* are different keys"):
        dev.flash(forged, attacker, trust=keys / "bundle-signing.pub")
    with pytest.raises(BundleError, match="signature does not verify"):
        dev.flash(forged, trust=keys / "bundle-signing.pub")
    assert not (devices / "trusting" / SECURE_FILE).exists()  # nothing provisioned by a refused flash
    r = dev.flash(bundles / "edgetpu-v1.kedge", trust=keys / "bundle-signing.pub")
    assert "provisioned" in r.notes[0] and "--trust" in r.notes[0]
    assert _dev("trusting").describe()["trusted_key_id"] == key_id(load_public_key(keys))
    with pytest.raises(BundleError, match="signature does not verify"):
        _dev("trusting").flash(forged)  # no --keys: the device's own key decides
    with pytest.raises(FlashRefused, match="trusts signing key"):
        _dev("trusting").flash(forged, trust=attacker)  # --trust cannot replace an anchor
    # no flag at all: the default keys folder's public key is provisioned (and said)
    monkeypatch.setenv("KASMINA_KEYS_DIR", str(keys))
    r = _dev("newcomer").flash(bundles / "edgetpu-v1.kedge")
    assert r.notes[0].startswith(f"trusted key {key_id(load_public_key(keys))} provisioned from the default keys folder")
    # an update over the air never provisions a key
    with pytest.raises(FlashRefused, match="cannot provision one"):
        _dev("blank").flash(bundles / "edgetpu-v1.kedge", keys, via="ota")


def test_dir_device_ignores_an_edited_manifest_json(tmp_path: Path, bundles: Path, keys: Path) -> None:
    dev = open_device(f"dir:{tmp_path / 'mnt'}")
    assert isinstance(dev, DirDevice)
    dev.flash(bundles / "linux-arm-v2.kedge", keys)
    (tmp_path / "mnt" / "manifest.json").write_text(json.dumps({"version": 0}))  # unsigned: anyone can write it
    for older_or_equal in ("linux-arm-v1.kedge", "linux-arm-v2.kedge"):
        with pytest.raises(FlashRefused, match="security counter 2"):
            open_device(f"dir:{tmp_path / 'mnt'}").flash(bundles / older_or_equal, keys)
