"""Emulated devices: flash with A/B slots, verified boot, monotonic version counter; mass-storage folders.

``emu://NAME`` is a device kept under the devices folder (``KASMINA_DEVICES_DIR``, default
``~/.local/share/kasmina-edge/devices``)::

    NAME/device.json          profile, active/pending slot, a copy of the counter, history
    NAME/secure/state.json    secure storage: trusted public key, image and kernel security counters
    NAME/slot-a/bundle.kedge  NAME/slot-a/slot.json   (and slot-b)

``flash`` verifies the Ed25519 signature (with the key provisioned on the device: ``--trust KEYFILE``, or on the
first local flash the keys folder's public key; never a key a bundle brings) and every hash, refuses a bundle
for another target, one that does not fit the profile's flash or SRAM, or one whose version is not above the
security counter (:mod:`firmware_sim.security`: older *or equal* is refused); it writes the *inactive* slot
(slot.json removed first, bundle and slot.json written atomically, device.json last) and marks it pending.
``boot`` tries the pending slot first (a trial), verifies it again (a slot below the counter is never booted),
and falls back to the last good slot when verification fails or a trial was never confirmed. ``confirm`` (after
the runtime's probation) makes the trial slot the active one and moves the security counter; ``reject``
marks it bad so the next boot falls back. A power cut (emulated by :class:`storage.PowerCut`) can
happen anywhere in a flash: the active slot is never touched, and the next boot cleans up.

A kernel-only bundle (``kind = "kernels"``, e.g. one patient's seed) does not take a slot: it goes
to the device's one kernel store (:mod:`firmware_sim.kernel_store`: ``NAME/kernels/index.json`` and
``NAME/kernels/BUNDLE_ID.kedge``), beside the application image, with the store's checks (signature,
target, base: the checkpoint hash of the active slot, else the pending one; sites and grids; a version above
the kernel security counter). An over-the-air update (:mod:`firmware_sim.ota`) comes through this same ``flash``. At
boot the runner loads the stored kernels of the booted base into the image: a kernel stored while
the device runs goes live at its next boot.

``dir:PATH`` is a mass-storage device: ``kasmina.kedge`` and ``manifest.json`` written atomically; its
downgrade check reads its secure storage and the installed bundle's signed manifest.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from firmware_sim.device_types import (  # noqa: F401  (re-exported: the device API in one import)
    DIR_BUNDLE,
    DIR_MANIFEST,
    BootResult,
    DeviceAddress,
    FlashResult,
    devices_dir,
)
from firmware_sim.dir_device import DirDevice
from firmware_sim.errors import DeviceError, FlashRefused
from firmware_sim.fit import bundle_report, check_fits, require_bundle_file, runnable_bytes  # noqa: F401
from firmware_sim.kernel_store import KernelStore
from firmware_sim.security import SecureStore, refuse_not_newer, refuse_other_signers
from firmware_sim.storage import FlashStorage
from kasmina_edge.contracts.bundle import Bundle, BundleError, key_id, load_public_key, read_bundle
from kasmina_edge.core.catalog import hardware
from kasmina_edge.core.profiles import HardwareProfile

SLOTS = ("a", "b")
MAX_TRIAL_BOOTS = 3  # a trial slot never confirmed after this many boots is abandoned


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class EmulatedDevice:
    """An ``emu://NAME`` device: A/B flash slots under its folder."""

    def __init__(self, address: DeviceAddress, storage: FlashStorage | None = None) -> None:
        self.address = address
        self.root = address.path
        self.storage = storage or FlashStorage(self.root)
        self.booted_slot: str | None = None
        self.booted_trial = False

    # ------------------------------------------------------------------ state

    @property
    def exists(self) -> bool:
        return (self.root / "device.json").exists()

    def state(self) -> dict[str, Any]:
        st = self.storage.read_json("device.json")
        return (
            st
            if isinstance(st, dict)
            else {
                "name": self.address.name,
                "active": None,
                "pending": None,
                "version_counter": 0,
                "history": [],
            }
        )

    def _save(self, st: dict[str, Any]) -> None:
        self.storage.write_json("device.json", st)

    def _log(self, st: dict[str, Any], event: str, **detail: Any) -> None:
        st.setdefault("history", []).append(
            {"event": event, "at": time.strftime("%Y-%m-%dT%H:%M:%S"), **detail}
        )
        st["history"] = st["history"][-30:]

    def profile(self) -> HardwareProfile | None:
        name = self.state().get("profile")
        return hardware(name) if name else None

    def slot_info(self, slot: str) -> dict[str, Any] | None:
        info = self.storage.read_json(f"slot-{slot}/slot.json")
        return info if isinstance(info, dict) else None

    def security(self) -> SecureStore:
        """The device's secure storage: trust anchor and monotonic security counters."""
        return SecureStore(self.storage)

    def _trusted_key(self, st: dict[str, Any] | None = None) -> Ed25519PublicKey | None:
        return self.security().trusted_key()

    def rotate_trust(self, statement_path: Path) -> str:
        """Adopt the signing key a rotation statement names (signed by the key trusted now); the new key id."""
        try:
            statement = json.loads(Path(statement_path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DeviceError(f"{statement_path}: not a readable key rotation statement ({exc})") from None
        new = self.security().rotate(statement)
        st = self.state()
        self._log(st, "trust_rotated", to=new)
        self._save(st)
        return new

    def _anchor(self, keys: Path | None, trust: Path | None, via: str) -> tuple[Ed25519PublicKey, str | None]:
        """The key bundles must verify with: the one provisioned on the device, never the bundle's own.
        Not yet provisioned: ``trust`` (``flash --trust KEYFILE``), else, on a local flash only, the keys folder's
        public key (``--keys`` or the default folder). Returns the key and, when it is to be provisioned, a note."""
        trusted = self._trusted_key()
        if trusted is not None:
            refuse_other_signers(str(self.address), trusted, keys, trust,
                                 "; the trust anchor is provisioned once (rotation: SECURITY.md)")
            return trusted, None
        if via != "flash":
            raise FlashRefused(f"{self.address}: no trusted key provisioned; an update over the air cannot provision one")
        if trust is not None and keys is not None and key_id(load_public_key(trust)) != key_id(load_public_key(keys)):
            raise FlashRefused(f"--trust {trust} and --keys {keys} are different keys; the bundle must verify with the trusted one")
        source = trust if trust is not None else keys
        key = load_public_key(source)
        where = str(source) if source is not None else "the default keys folder"
        how = "--trust" if trust is not None else "first local flash; `flash --trust KEYFILE` provisions another key"
        return key, f"trusted key {key_id(key)} provisioned from {where} ({how})"

    # ------------------------------------------------------------------ flash

    def flash(
        self,
        bundle_path: Path,
        keys: Path | None = None,
        *,
        profile: str | None = None,
        via: str = "flash",
        expect_kind: str | None = None,
        trust: Path | None = None,
    ) -> FlashResult:
        """Verify ``bundle_path`` and write it: a full image to the inactive slot, kernels to the kernel store.
        ``via`` says how it came (``flash``, ``ota``: kept with stored kernels); ``expect_kind`` refuses a
        bundle of another kind than an update announced; ``trust`` provisions the device's trusted key on its
        first flash (otherwise the keys folder's public key is provisioned, on a local flash only)."""
        require_bundle_file(bundle_path)
        st = self.state()
        anchor, provisioning = self._anchor(keys, trust, via)
        bundle = read_bundle(bundle_path, anchor)
        m = bundle.manifest
        if expect_kind is not None and m.kind != expect_kind:
            raise FlashRefused(f"bundle {m.bundle_id} is a {m.kind} bundle, announced as {expect_kind}")
        if m.kind == "kernels":
            return self._flash_kernels(Path(bundle_path), st, via)
        prof = hardware(profile or st.get("profile") or m.profile)
        if st.get("profile") and profile and profile != st["profile"]:
            raise FlashRefused(f"{self.address} is a {st['profile']} device, not {profile}")
        notes = check_fits(bundle, prof)
        refusal = refuse_not_newer("bundle", m.version, self.security().counter("image"), str(self.address))
        if refusal:
            raise FlashRefused(refusal)
        if provisioning is not None:  # the anchor is written only once a bundle verified with it
            self.security().provision(anchor, provisioning)
            notes.insert(0, provisioning)
        active = st.get("active")
        slot = next(s for s in SLOTS if s != active) if active else SLOTS[0]
        data = Path(bundle_path).read_bytes()
        # the slot is invalid while written
        (self.root / f"slot-{slot}" / "slot.json").unlink(missing_ok=True)
        self.storage.write_atomic(f"slot-{slot}/bundle.kedge", data)
        self.storage.write_json(
            f"slot-{slot}/slot.json",
            {
                "bundle_id": m.bundle_id,
                "version": m.version,
                "sha256": _sha256(data),
                "bytes": len(data),
                "target": m.target,
                "state": "written",
                "written_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
            },
        )
        st.update(
            {
                "name": self.address.name,
                "profile": prof.name,
                "target": m.target,
                "pending": slot,
                "trial_boots": 0,
            }
        )
        self._log(st, "flash", slot=slot, bundle_id=m.bundle_id, version=m.version, via=via)
        self._save(st)
        return FlashResult(
            str(self.address), slot, m.bundle_id, m.version, len(data), m.target, prof.name, notes
        )

    # ------------------------------------------------------------------ kernel store

    def _base(self, st: dict[str, Any]) -> tuple[str, Bundle] | None:
        """The base the device runs (the active slot, else the pending one), verified."""
        key = self._trusted_key()
        for slot in (st.get("active"), st.get("pending")):
            if slot and key is not None:
                try:
                    return slot, self._verify_slot(slot, key)
                except DeviceError:
                    continue
        return None

    def _flash_kernels(self, path: Path, st: dict[str, Any], via: str) -> FlashResult:
        found = self._base(st) if self.exists else None
        if found is None:
            raise FlashRefused(
                f"{self.address} holds no base to add kernels to: flash a full bundle first (this one is kernels only)"
            )
        slot, base = found
        done = self.kernel_store().install(
            path,
            self._trusted_key(),
            base,
            via=via,
            device=str(self.address),
            image_bytes=(self.slot_info(slot) or {}).get("bytes"),
        )
        if not done.unchanged:
            self._log(
                st,
                "flash_kernels",
                bundle_id=done.bundle_id,
                sites=done.sites,
                replaced=done.replaced,
                via=via,
            )
            self._save(st)
        notes = [
            *done.notes,
            f"kernels {', '.join(done.kernels)} stored for base {base.manifest.base_checkpoint[:12]}; "
            "they go live at the next boot (the next run)",
        ]
        return FlashResult(
            str(self.address),
            "kernels",
            done.bundle_id,
            done.version,
            done.bytes,
            base.manifest.target,
            str(st.get("profile")),
            notes,
            kernels=done,
        )

    def kernel_store(self) -> KernelStore:
        """The device's one kernel store (flash and OTA write it, boot reads it)."""
        return KernelStore(self.storage)

    def kernel_bundles(self, base: Bundle) -> tuple[list[Bundle], list[str]]:
        """The stored kernel bundles for ``base`` (verified again), and why any others were skipped."""
        return self.kernel_store().bundles_for(base, self._trusted_key())

    # ------------------------------------------------------------------ boot

    def _verify_slot(self, slot: str, key: Ed25519PublicKey) -> Bundle:
        info = self.slot_info(slot)
        path = self.root / f"slot-{slot}" / "bundle.kedge"
        if info is None:
            raise DeviceError(f"slot {slot}: no slot record (never written, or cut off while flashing)")
        if info.get("state") == "bad":
            raise DeviceError(f"slot {slot}: marked bad ({info.get('reason', 'unknown')})")
        if not path.exists():
            raise DeviceError(f"slot {slot}: bundle missing")
        if _sha256(path.read_bytes()) != info.get("sha256"):
            raise DeviceError(f"slot {slot}: bundle does not match the hash recorded when it was written")
        try:
            bundle = read_bundle(path, key)
        except BundleError as exc:
            raise DeviceError(f"slot {slot}: {exc}") from None
        if bundle.manifest.bundle_id != info.get("bundle_id"):
            raise DeviceError(f"slot {slot}: bundle id differs from the slot record")
        counter = self.security().counter("image")
        if bundle.manifest.version < counter:  # an old image left in a slot is never booted again
            raise DeviceError(
                f"slot {slot}: version {bundle.manifest.version} is below the security counter {counter}"
            )
        return bundle

    def _mark(self, slot: str, state: str, reason: str | None = None) -> None:
        info = self.slot_info(slot)
        if info is None:
            return
        info["state"] = state
        if reason:
            info["reason"] = reason
        self.storage.write_json(f"slot-{slot}/slot.json", info)

    def boot(self) -> BootResult:
        if not self.exists:
            raise DeviceError(
                f"{self.address} has never been flashed (kasmina-edge flash BUNDLE --device {self.address})"
            )
        self.storage.cleanup_partials()
        st = self.state()
        key = self._trusted_key()
        if key is None:
            raise DeviceError(f"{self.address}: no trusted key provisioned")
        prof = hardware(st["profile"])
        fallbacks: list[str] = []
        order: list[tuple[str, bool]] = []
        if st.get("pending"):
            order.append((st["pending"], True))
        if st.get("active"):
            order.append((st["active"], False))
        for s in SLOTS:  # the last good slot, even when nothing points at it any more
            info = self.slot_info(s)
            if info is not None and info.get("state") == "good" and all(s != o for o, _ in order):
                order.append((s, False))
        for slot, trial in order:
            if trial:
                st["trial_boots"] = int(st.get("trial_boots", 0)) + 1
                if st["trial_boots"] > MAX_TRIAL_BOOTS:
                    why = f"slot {slot}: not confirmed after {MAX_TRIAL_BOOTS} trial boots"
                    self._mark(slot, "bad", why)
                    fallbacks.append(why)
                    st["pending"] = None
                    continue
            try:
                bundle = self._verify_slot(slot, key)
            except DeviceError as exc:
                fallbacks.append(str(exc))
                self._mark(slot, "bad", str(exc))
                if trial:
                    st["pending"] = None
                elif st.get("active") == slot:
                    st["active"] = None
                continue
            self.booted_slot, self.booted_trial = slot, trial
            if not trial and st.get("active") != slot:
                st["active"] = slot
            self._log(
                st, "boot", slot=slot, trial=trial, bundle_id=bundle.manifest.bundle_id, fallbacks=fallbacks
            )
            self._save(st)
            return BootResult(bundle, slot, trial, prof, fallbacks)
        self._log(st, "boot_failed", fallbacks=fallbacks)
        self._save(st)
        raise DeviceError(f"{self.address}: no bootable slot ({'; '.join(fallbacks) or 'nothing flashed'})")

    def confirm(self) -> None:
        """The booted slot passed probation: make it the active one, move the version counter."""
        slot = self.booted_slot
        if slot is None:
            return
        st = self.state()
        info = self.slot_info(slot) or {}
        self._mark(slot, "good")
        if self.booted_trial:
            st["active"], st["pending"], st["trial_boots"] = slot, None, 0
            self.booted_trial = False
        # the security counter lives in secure storage; device.json keeps a copy for `describe`
        st["version_counter"] = self.security().advance("image", int(info.get("version", 0)))
        self._log(st, "confirm", slot=slot, version=info.get("version"))
        self._save(st)

    def reject(self, reason: str) -> None:
        """The booted slot failed (boot checks or probation): mark it bad; the next boot falls back."""
        slot = self.booted_slot
        if slot is None:
            return
        st = self.state()
        self._mark(slot, "bad", reason)
        if st.get("pending") == slot:
            st["pending"] = None
        if st.get("active") == slot:
            st["active"] = None
        self._log(st, "reject", slot=slot, reason=reason)
        self._save(st)
        self.booted_slot = None

    def describe(self) -> dict[str, Any]:
        st = self.state()
        sec = self.security().read()
        return {
            "device": str(self.address),
            "profile": st.get("profile"),
            "active": st.get("active"),
            "pending": st.get("pending"),
            "version_counter": sec.image_counter,
            "kernel_counter": sec.kernel_counter,
            "trusted_key_id": sec.trusted_key_id,
            "slots": {s: self.slot_info(s) for s in SLOTS},
            "kernels": self.kernel_store().entries(),
        }


Device = EmulatedDevice | DirDevice


def open_device(spec: str, root: Path | None = None) -> Device:
    addr = DeviceAddress.parse(spec, root)
    return EmulatedDevice(addr) if addr.kind == "emu" else DirDevice(addr)
