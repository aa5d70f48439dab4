"""Flash and boot: signatures, targets, sizes, versions, A/B slots, fallbacks, power cuts, mass storage."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from firmware_sim.device import (
    MAX_TRIAL_BOOTS,
    DeviceAddress,
    DeviceError,
    DirDevice,
    EmulatedDevice,
    FlashRefused,
    open_device,
)
from firmware_sim.storage import FlashStorage, PowerCut
from kasmina_edge.contracts.bundle import BundleError, init_keys
from kasmina_edge.core.catalog import hardware


def _dev(name: str = "patch-01", storage: FlashStorage | None = None) -> EmulatedDevice:
    addr = DeviceAddress.parse(f"emu://{name}")
    return EmulatedDevice(addr, storage)


def test_flash_boot_confirm_then_update_to_the_other_slot(devices: Path, bundles: Path, keys: Path) -> None:
    dev = _dev()
    r = dev.flash(bundles / "edgetpu-v1.kedge", keys)
    assert r.slot == "a" and r.profile == "coral-usb" and (devices / "patch-01" / "slot-a" / "bundle.kedge").exists()
    boot = dev.boot()
    assert boot.slot == "a" and boot.trial and boot.bundle.manifest.version == 1
    dev.confirm()
    st = dev.describe()
    assert st["active"] == "a" and st["pending"] is None and st["version_counter"] == 1
    r2 = dev.flash(bundles / "edgetpu-v2.kedge", keys)
    assert r2.slot == "b"
    boot2 = _dev().boot()
    assert boot2.slot == "b" and boot2.trial and boot2.bundle.manifest.version == 2


def test_probation_failure_falls_back_to_the_last_good_slot(devices: Path, bundles: Path, keys: Path) -> None:
    dev = _dev()
    dev.flash(bundles / "edgetpu-v1.kedge", keys)
    dev.boot()
    dev.confirm()
    dev.flash(bundles / "edgetpu-v2.kedge", keys)
    assert dev.boot().slot == "b"
    dev.reject("probation failed: segment reference mismatch")
    again = _dev().boot()
    assert again.slot == "a" and not again.trial and again.bundle.manifest.version == 1
    assert _dev().slot_info("b")["state"] == "bad"


def test_unconfirmed_trial_is_abandoned_after_a_few_boots(devices: Path, bundles: Path, keys: Path) -> None:
    dev = _dev()
    dev.flash(bundles / "edgetpu-v1.kedge", keys)
    dev.boot()
    dev.confirm()
    dev.flash(bundles / "edgetpu-v2.kedge", keys)
    slots = [_dev().boot().slot for _ in range(MAX_TRIAL_BOOTS + 1)]
    assert slots == ["b"] * MAX_TRIAL_BOOTS + ["a"]


def test_refuses_downgrade_wrong_target_too_big_and_wrong_key(devices: Path, bundles: Path, keys: Path,
                                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dev = _dev()
    dev.flash(bundles / "edgetpu-v2.kedge", keys)
    dev.boot()
    dev.confirm()
    with pytest.raises(FlashRefused, match="version 1 is older than .* security counter 2"):
        dev.flash(bundles / "edgetpu-v1.kedge", keys)
    with pytest.raises(FlashRefused, match="built for target linux-arm; profile coral-usb runs edgetpu"):
        dev.flash(bundles / "linux-arm-v2.kedge", keys)
    other = tmp_path / "other-keys"
    init_keys(other)
    with pytest.raises(FlashRefused, match="trusts signing key"):
        dev.flash(bundles / "edgetpu-v2.kedge", other)
    # a profile whose flash cannot hold two slots of this bundle
    small = hardware("stm32h743")
    tiny = small.model_copy(update={"memory": small.memory.model_copy(update={"flash_bytes": 20_000})})
    monkeypatch.setattr("firmware_sim.device.hardware", lambda name: tiny if name == "stm32h743" else hardware(name))
    with pytest.raises(FlashRefused, match=r"A/B slots\) of flash; stm32h743 has 20,000 B .*memory.flash_bytes"):
        _dev("mcu").flash(bundles / "cortex-m-v1.kedge", keys)


def test_corrupted_bundle_is_refused_and_a_corrupted_slot_is_not_booted(devices: Path, bundles: Path, keys: Path,
                                                                      tmp_path: Path) -> None:
    bad = tmp_path / "bad.kedge"
    with zipfile.ZipFile(bundles / "edgetpu-v1.kedge") as zin, zipfile.ZipFile(bad, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename == "artifacts/segment_1.tflite":
                data = data[:100] + bytes([data[100] ^ 0xFF]) + data[101:]
            zout.writestr(info, data)
    dev = _dev()
    with pytest.raises(BundleError, match="segment_1.*does not match its SHA-256"):
        dev.flash(bad, keys)
    assert not dev.exists
    dev.flash(bundles / "edgetpu-v1.kedge", keys)
    dev.boot()
    dev.confirm()
    dev.flash(bundles / "edgetpu-v2.kedge", keys)
    blob = devices / "patch-01" / "slot-b" / "bundle.kedge"
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF  # bit rot in flash
    blob.write_bytes(bytes(data))
    boot = _dev().boot()
    assert boot.slot == "a" and any("slot b" in f for f in boot.fallbacks)


@pytest.mark.parametrize("where", ["first block", "mid bundle", "last block", "slot record", "device record"])
def test_power_cut_during_flash_keeps_the_running_slot(devices: Path, bundles: Path, keys: Path, where: str) -> None:
    dev = _dev()
    dev.flash(bundles / "edgetpu-v1.kedge", keys)
    dev.boot()
    dev.confirm()
    size = (bundles / "edgetpu-v2.kedge").stat().st_size
    cut = {"first block": 10, "mid bundle": size // 2, "last block": size - 5, "slot record": size + 20,
           "device record": size + 400}[where]
    with pytest.raises(PowerCut):
        _dev(storage=FlashStorage(devices / "patch-01", cut_after_bytes=cut)).flash(bundles / "edgetpu-v2.kedge", keys)
    leftovers = list((devices / "patch-01").rglob("*.partial"))
    assert leftovers  # the cut left a half-written file behind ...
    boot = _dev().boot()
    assert boot.slot == "a" and boot.bundle.manifest.version == 1  # ... and the device still boots v1
    assert not list((devices / "patch-01").rglob("*.partial"))
    assert _dev().describe()["version_counter"] == 1
    # and flashing again after the cut works
    _dev().flash(bundles / "edgetpu-v2.kedge", keys)
    assert _dev().boot().bundle.manifest.version == 2


def test_never_flashed_and_bad_addresses() -> None:
    with pytest.raises(DeviceError, match="never been flashed"):
        _dev("nobody").boot()
    for spec in ("patch-01", "emu://", "emu://a/b", "usb://x"):
        with pytest.raises(DeviceError):
            DeviceAddress.parse(spec)


def test_dir_device_is_flashed_like_mass_storage(tmp_path: Path, bundles: Path, keys: Path) -> None:
    dev = open_device(f"dir:{tmp_path / 'mnt'}")
    assert isinstance(dev, DirDevice)
    r = dev.flash(bundles / "linux-arm-v2.kedge", keys)
    assert r.slot is None and r.version == 2
    assert (tmp_path / "mnt" / "kasmina.kedge").read_bytes() == (bundles / "linux-arm-v2.kedge").read_bytes()
    manifest = json.loads((tmp_path / "mnt" / "manifest.json").read_text())
    assert manifest["version"] == 2 and manifest["target"] == "linux-arm"
    assert not list((tmp_path / "mnt").glob("*.partial"))
    with pytest.raises(FlashRefused, match="version 1 is older than .* security counter 2"):
        dev.flash(bundles / "linux-arm-v1.kedge", keys)
    boot = dev.boot(keys)
    assert boot.bundle.manifest.version == 2 and boot.profile.name == "rpi4"
