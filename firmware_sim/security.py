"""The emulated device's secure storage: its trust anchor, its monotonic security counters, its replay ledger.

On real hardware these live where an attacker with the update channel cannot reach them: the trusted public
key in OTP or a write-protected sector, the counters in RPMB / a monotonic counter of the secure element (as
MCUboot's hardware security counter). Here they are one file in the device's own storage, ``secure/state.json``,
written atomically, apart from the A/B slots and ``device.json``: flashing a slot, switching slots, rebooting
or a power cut never lowers a counter, and the file is read again on every flash and boot.

* ``trusted_key_pem``: the Ed25519 key every bundle must verify with. It is provisioned once (``flash --trust
  KEYFILE``, or on the first local flash from the keys folder) and never taken from a bundle or an update.
* ``image_counter``: the version of the newest full image confirmed on this device; an image of this version or
  older is refused (flash and OTA), and boot refuses a slot below it.
* ``kernel_counter``: the version of the newest kernel-only bundle stored; a kernel bundle of this version or
  older is refused on every path (flash, OTA), except the very same bundle again (nothing written).

The anchor changes only on a rotation statement signed by the anchor itself (:meth:`SecureStore.rotate`,
``kasmina-edge keys rotate`` then ``flash --rotate FILE``); the counters never go down, whichever key signs.

A device flashed before this file existed migrates on first read: its ``device.json`` counter and key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from firmware_sim.errors import DeviceError, FlashRefused
from firmware_sim.storage import FlashStorage
from kasmina_edge.contracts.bundle import key_id, load_public_key

SECURE_FILE = "secure/state.json"
FORMAT = "kasmina-secure/1"
Counter = Literal["image", "kernel"]


def public_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


@dataclass
class SecureState:
    trusted_key_pem: str | None = None
    trusted_key_id: str | None = None
    provisioned_from: str | None = None
    image_counter: int = 0
    kernel_counter: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, **self.__dict__}


class SecureStore:
    """The device's secure storage (one JSON file written atomically; counters only move up)."""

    def __init__(self, storage: FlashStorage) -> None:
        self.storage = storage

    def read(self) -> SecureState:
        raw = self.storage.read_json(SECURE_FILE)
        if isinstance(raw, dict) and raw.get("format") == FORMAT:
            return SecureState(
                trusted_key_pem=raw.get("trusted_key_pem"),
                trusted_key_id=raw.get("trusted_key_id"),
                provisioned_from=raw.get("provisioned_from"),
                image_counter=int(raw.get("image_counter") or 0),
                kernel_counter=int(raw.get("kernel_counter") or 0),
            )
        if (self.storage.root / SECURE_FILE).exists():
            # present but unreadable: refusing everything is the safe answer (a counter must never reset)
            raise DeviceError(f"{self.storage.root / SECURE_FILE}: secure storage is damaged; the device refuses updates")
        legacy = self.storage.read_json("device.json")  # a device flashed before secure storage existed
        if isinstance(legacy, dict):
            return SecureState(
                trusted_key_pem=legacy.get("trusted_key_pem"),
                trusted_key_id=legacy.get("trusted_key_id"),
                provisioned_from="device.json (migrated)" if legacy.get("trusted_key_pem") else None,
                image_counter=int(legacy.get("version_counter") or 0),
            )
        return SecureState()

    def write(self, state: SecureState, *, rotating: bool = False) -> None:
        old = self.read()
        if state.image_counter < old.image_counter or state.kernel_counter < old.kernel_counter:
            raise DeviceError("secure storage: a security counter never goes down")
        if old.trusted_key_pem and state.trusted_key_pem != old.trusted_key_pem and not rotating:
            raise DeviceError("secure storage: the trusted key is provisioned once (see SECURITY.md: rotation)")
        self.storage.write_json(SECURE_FILE, state.to_dict())

    # ------------------------------------------------------------------ trust anchor

    def trusted_key(self) -> Ed25519PublicKey | None:
        pem = self.read().trusted_key_pem
        if not pem:
            return None
        key = serialization.load_pem_public_key(pem.encode())
        if not isinstance(key, Ed25519PublicKey):
            raise DeviceError("secure storage: the trusted key is not Ed25519")
        return key

    def provision(self, key: Ed25519PublicKey, source: str) -> None:
        state = self.read()
        if state.trusted_key_pem:
            if state.trusted_key_id == key_id(key):
                return
            raise DeviceError(
                f"already trusts signing key {state.trusted_key_id}; the trust anchor is provisioned once"
            )
        state.trusted_key_pem, state.trusted_key_id, state.provisioned_from = public_pem(key), key_id(key), source
        self.write(state)

    def rotate(self, statement: Any) -> str:
        """Move the trust anchor to the key a rotation statement names, if the current anchor signed it;
        returns the new key id. The counters stay: a new key does not reopen old versions."""
        from kasmina_edge.contracts.bundle import SigningKeyError, verify_rotation

        current = self.trusted_key()
        if current is None:
            raise DeviceError("no trusted key provisioned yet: provision one (flash --trust KEYFILE), nothing to rotate")
        try:
            new = verify_rotation(statement, current)
        except SigningKeyError as exc:
            raise DeviceError(f"key rotation refused: {exc}") from None
        state = self.read()
        state.trusted_key_pem, state.trusted_key_id = public_pem(new), key_id(new)
        state.provisioned_from = f"rotation from {key_id(current)}"
        self.write(state, rotating=True)
        return key_id(new)

    # ------------------------------------------------------------------ counters

    def counter(self, which: Counter) -> int:
        state = self.read()
        return state.image_counter if which == "image" else state.kernel_counter

    def advance(self, which: Counter, version: int) -> int:
        """Move a counter up to ``version`` (never down); returns the counter."""
        state = self.read()
        if which == "image":
            state.image_counter = max(state.image_counter, int(version))
        else:
            state.kernel_counter = max(state.kernel_counter, int(version))
        self.write(state)
        return state.image_counter if which == "image" else state.kernel_counter


def refuse_not_newer(what: str, version: int, counter: int, device: str) -> str | None:
    """The one line that refuses a version at or below the counter, or None when it is newer."""
    if version > counter:
        return None
    how = "older than" if version < counter else "equal to"
    return (
        f"{what} version {version} is {how} {device}'s security counter {counter} "
        f"(no downgrades, no re-installs: build with a higher --version)"
    )


def refuse_other_signers(address: str, trusted: Ed25519PublicKey, keys: Path | None, trust: Path | None,
                         hint: str = "") -> None:  # fmt: skip
    """A device with a provisioned trust anchor refuses a flash that names another key (``--trust``/``--keys``)."""
    for given, flag in ((trust, "--trust"), (keys, "--keys")):
        if given is not None and key_id(load_public_key(given)) != key_id(trusted):
            raise FlashRefused(f"{address} trusts signing key {key_id(trusted)}, not {key_id(load_public_key(given))} "
                               f"({flag} {given}){hint}")  # fmt: skip
