"""A ``dir:PATH`` device: one slot on mass storage, its own secure storage for the trust anchor and counter."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from firmware_sim.device_types import DIR_BUNDLE, DIR_MANIFEST, BootResult, DeviceAddress, FlashResult
from firmware_sim.errors import DeviceError, FlashRefused
from firmware_sim.fit import check_fits, require_bundle_file
from firmware_sim.security import SecureStore, refuse_not_newer, refuse_other_signers
from firmware_sim.storage import FlashStorage
from kasmina_edge.contracts.bundle import BundleError, key_id, load_public_key, read_bundle
from kasmina_edge.core.catalog import hardware


class DirDevice:
    """A ``dir:PATH`` device: flashed like mass storage (bundle and manifest written atomically).

    Its trust anchor and security counter are in its own secure storage (``secure/state.json`` in the folder,
    as an emu device's); the downgrade check reads them and the installed bundle's *signed* manifest, never
    the ``manifest.json`` copy beside it (that one is for people and tools, and nobody signs it)."""

    def __init__(self, address: DeviceAddress, storage: FlashStorage | None = None) -> None:
        self.address = address
        self.root = address.path
        self.storage = storage or FlashStorage(self.root)
        self.booted_slot: str | None = None
        self.booted_trial = False

    def security(self) -> SecureStore:
        return SecureStore(self.storage)

    def _installed(self) -> dict[str, Any] | None:
        m = self.storage.read_json(DIR_MANIFEST)
        return m if isinstance(m, dict) else None

    def _anchor(self, keys: Path | None, trust: Path | None) -> tuple[Ed25519PublicKey, str | None]:
        trusted = self.security().trusted_key()
        if trusted is not None:
            refuse_other_signers(str(self.address), trusted, keys, trust)
            return trusted, None
        source = trust if trust is not None else keys
        key = load_public_key(source)
        where = str(source) if source is not None else "the default keys folder"
        return key, f"trusted key {key_id(key)} provisioned from {where}"

    def flash(
        self,
        bundle_path: Path,
        keys: Path | None = None,
        *,
        profile: str | None = None,
        trust: Path | None = None,
        via: str = "flash",
        expect_kind: str | None = None,
    ) -> FlashResult:
        require_bundle_file(bundle_path)
        if self.root.exists() and not self.root.is_dir():
            raise FlashRefused(f"{self.address}: {self.root} is not a folder")
        anchor, provisioning = self._anchor(keys, trust)
        bundle = read_bundle(bundle_path, anchor)
        m = bundle.manifest
        if m.kind == "kernels":
            raise FlashRefused(
                f"{self.address}: a mass-storage device takes full bundles only (this one is kernels only)"
            )
        prof = hardware(profile or m.profile)
        notes = check_fits(bundle, prof, slots=1)
        refusal = refuse_not_newer("bundle", m.version, self._counter(anchor), str(self.address))
        if refusal:
            raise FlashRefused(refusal)
        if provisioning is not None:
            self.security().provision(anchor, provisioning)
            notes.insert(0, provisioning)
        data = Path(bundle_path).read_bytes()
        self.storage.write_atomic(DIR_BUNDLE, data)
        self.storage.write_atomic(DIR_MANIFEST, m.to_bytes())  # beside the bundle, readable without unzipping
        # one slot: the image is live as soon as it is written, so the counter moves now
        self.security().advance("image", m.version)
        return FlashResult(
            str(self.address), None, m.bundle_id, m.version, len(data), m.target, prof.name, notes
        )

    def _counter(self, key: Ed25519PublicKey) -> int:
        """The security counter, or the installed bundle's signed version where that is higher."""
        counter = self.security().counter("image")
        path = self.root / DIR_BUNDLE
        if path.exists():
            with contextlib.suppress(BundleError):  # a damaged image lowers nothing: the counter holds
                counter = max(counter, read_bundle(path, key).manifest.version)
        return counter

    def boot(self, keys: Path | None = None) -> BootResult:
        self.storage.cleanup_partials()
        path = self.root / DIR_BUNDLE
        if not path.exists():
            raise DeviceError(
                f"{self.address}: no {DIR_BUNDLE} (kasmina-edge flash BUNDLE --device {self.address})"
            )
        key = self.security().trusted_key()
        try:
            bundle = read_bundle(path, key if key is not None else keys)
        except BundleError as exc:
            raise DeviceError(f"{self.address}: {exc}") from None
        counter = self.security().counter("image")
        if bundle.manifest.version < counter:
            raise DeviceError(
                f"{self.address}: installed version {bundle.manifest.version} is below the security counter {counter}"
            )
        return BootResult(bundle, None, False, hardware(bundle.manifest.profile))

    def confirm(self) -> None:
        """Mass storage has one slot: nothing to confirm."""

    def reject(self, reason: str) -> None:
        raise DeviceError(
            f"{self.address}: the installed bundle failed ({reason}) and there is no other slot"
        )

    def describe(self) -> dict[str, Any]:
        m = self._installed() or {}
        sec = self.security().read()
        return {
            "device": str(self.address),
            "bundle_id": m.get("bundle_id"),
            "version": m.get("version"),
            "profile": m.get("profile"),
            "version_counter": sec.image_counter,
            "trusted_key_id": sec.trusted_key_id,
        }
