"""Rotating the bundle signing key: the key devices trust signs the new one; the device moves its anchor only on
that statement, keeps its counters, and refuses the old key afterwards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from firmware_sim.device import DeviceAddress, DeviceError, EmulatedDevice, FlashRefused
from kasmina_edge.contracts.bundle import (
    BundleError,
    init_keys,
    key_id,
    load_private_key,
    load_public_key,
    next_version,
    read_bundle,
    record_signed_version,
    sign_rotation,
    write_bundle,
)

REPO = Path(__file__).resolve().parents[2]


def _resign(src: Path, keys: Path, new_keys: Path, out: Path, version: int) -> Path:
    b = read_bundle(src, keys)
    m = b.manifest.model_dump(mode="json", by_alias=True)
    write_bundle(out, {**m, "version": version}, {n: b.files[n] for n in b.manifest.files}, new_keys)
    return out


def test_rotation_end_to_end(devices: Path, bundles: Path, keys: Path, tmp_path: Path) -> None:
    old = tmp_path / "old"
    init_keys(old)
    record_signed_version("edgetpu", 2, "edgetpu-v2-x", old)
    new = tmp_path / "new"
    init_keys(new)
    v2_old = _resign(bundles / "edgetpu-v2.kedge", keys, old, tmp_path / "v2-old.kedge", 2)
    v3_new = _resign(bundles / "edgetpu-v2.kedge", keys, new, tmp_path / "v3-new.kedge", 3)
    v2_new = _resign(bundles / "edgetpu-v2.kedge", keys, new, tmp_path / "v2-new.kedge", 2)
    v4_old = _resign(bundles / "edgetpu-v2.kedge", keys, old, tmp_path / "v4-old.kedge", 4)
    dev = EmulatedDevice(DeviceAddress.parse("emu://rot"))
    dev.flash(v2_old, old)
    dev.boot()
    dev.confirm()
    env = {**os.environ, "KASMINA_DEVICES_DIR": str(devices)}
    done = subprocess.run([sys.executable, "-m", "kasmina_edge.cli.app", "keys", "rotate", "--dir", str(old),
                           "--to", str(new)], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    statement = next(new.glob("rotation-*.json"))
    assert next_version("edgetpu", new) == 3  # the record of signed versions moved with the key
    flashed = subprocess.run([sys.executable, "-m", "kasmina_edge.cli.app", "flash", str(v3_new), "--device",
                              "emu://rot", "--rotate", str(statement), "--keys", str(new)],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert flashed.returncode == 0, flashed.stderr
    assert f"now trusts signing key {key_id(load_public_key(new))}" in flashed.stdout
    rebooted = EmulatedDevice(DeviceAddress.parse("emu://rot"))
    assert rebooted.describe()["trusted_key_id"] == key_id(load_public_key(new))
    with pytest.raises(FlashRefused, match="trusts signing key"):
        rebooted.flash(v4_old, old)  # the old key is out, even with a newer version
    with pytest.raises(BundleError, match="signature does not verify"):
        rebooted.flash(v4_old)
    rebooted.boot()
    rebooted.confirm()
    with pytest.raises(FlashRefused, match="security counter 3"):
        rebooted.flash(v2_new)  # a new key does not reopen old versions


def test_forged_or_stale_rotations_are_refused(devices: Path, bundles: Path, keys: Path, tmp_path: Path) -> None:
    dev = EmulatedDevice(DeviceAddress.parse("emu://rot2"))
    dev.flash(bundles / "edgetpu-v1.kedge", keys)
    attacker, new = tmp_path / "attacker", tmp_path / "new"
    init_keys(attacker)
    init_keys(new)
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(sign_rotation(load_private_key(attacker), load_public_key(attacker))))
    with pytest.raises(DeviceError, match="rotation refused: the rotation is from key"):
        dev.rotate_trust(forged)
    good = sign_rotation(load_private_key(keys), load_public_key(new))
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps({**good, "new_public_pem": (attacker / "bundle-signing.pub").read_text()}))
    with pytest.raises(DeviceError, match="does not verify with the trusted key"):
        dev.rotate_trust(tampered)
    assert dev.describe()["trusted_key_id"] == key_id(load_public_key(keys))
