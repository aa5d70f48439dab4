"""The emulated device's one kernel store: kernel-only bundles (a patient's seed) beside the application image.

Every way a kernel-only bundle reaches an ``emu://`` device writes through :meth:`KernelStore.install`:
``kasmina-edge flash`` (:meth:`EmulatedDevice.flash <firmware_sim.device.EmulatedDevice.flash>`) and an
over-the-air update (:mod:`firmware_sim.ota`, whether the pieces came over the loopback network or over MQTT to
``kasmina-edge run --mqtt``). Boot reads it back (:meth:`KernelStore.bundles_for`, through
``EmulatedDevice.kernel_bundles`` and the runner), so a seed flashed or sent over the air goes live the same way
at the next boot. Layout under the device folder::

    kernels/index.json          {"format": "kasmina-kernel-store/1", "entries": [...], "erase_counts": [...],
                                 "next_block": N}
    kernels/BUNDLE_ID.kedge     each stored bundle as signed, verified again (hash and signature) at every boot

``install`` refuses (one line) a bundle whose signature the device's trusted key does not verify, that is not
kernels only, built for another target, for another base (the checkpoint hash it names against the base the
device runs), with a kernel at a site the base lacks or whose int8 grids differ from the base's site grid, whose
version is not above the device's kernel security counter (:mod:`firmware_sim.security`: older or equal is
refused, on flash and OTA alike), or too big for the store. A kernel the host culled is stored
with a note: the runtime refuses to bring it live (``kernel_refused`` in the run log), whichever way it came.
A new bundle replaces the stored ones for the same base that share a site or a kernel name; the very same bundle
again changes nothing (no erase spent).

Nothing is written half: the bundle goes to its file first (temp file + ``os.replace``), then the index (written
the same way) names it: that write is the commit; a power cut before it leaves the old index, and the file no
entry names is swept at the next install.

Wear: MCU flash wears out per erase block (10,000 erase cycles per sector in the STM32H743 datasheet, DS12110;
MCUboot's swap through a 4 KB scratch sector erases it once per image sector, github.com/mcu-tools/mcuboot
docs/design.md "Image Swapping", so a 150 KB image costs ~38 erases per A/B update). The store is a ring of ``sectors`` erase blocks: each install erases the next blocks and counts every
erase per block, so an update reports what it cost beside what a full-image update would have cost.

Older layouts are migrated on the first install: ``kernels/store.json`` (the flash path's list of ``.kedge``
files) becomes index entries; an index without ``format`` (the OTA path's raw ``.bin`` kernels, which carry no
signature to check at boot) keeps its erase counts and drops its kernels.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from firmware_sim.errors import FlashRefused
from firmware_sim.security import SecureStore, refuse_not_newer
from firmware_sim.storage import BLOCK_BYTES, FlashStorage
from kasmina_edge.contracts.bundle import Bundle, BundleError, read_bundle
from kasmina_edge.contracts.manifest import ArtifactEntry
from kasmina_edge.core.kernel_fit import kernel_bundle_misfit

FORMAT = "kasmina-kernel-store/1"
STORE_DIR = "kernels"
INDEX = f"{STORE_DIR}/index.json"
LEGACY_LIST = f"{STORE_DIR}/store.json"  # the flash path's list before there was one store
DEFAULT_SECTORS = 256  # 1 MiB of kernel store: what a 2 MB MCU (STM32H743) keeps beside two A/B image slots
ENDURANCE_CYCLES = 10_000  # NOR flash erase endurance per sector (STM32H743 datasheet DS12110: 10 kcycles)
LIVE_AT = "next boot"  # a stored kernel is loaded when the device boots; a running image is not changed


class KernelStoreError(FlashRefused):
    """A kernel-only bundle this device refuses (signature, base, target, grid, downgrade, store full)."""


@dataclass(frozen=True)
class KernelInstall:
    bundle_id: str | None
    version: int
    kernels: list[str]
    sites: list[int]
    bytes: int
    erase_blocks: int  # blocks this update erased
    full_image_blocks: int  # what rewriting the application slot would have erased
    max_block_cycles: int  # the most-worn block of the store after this update
    updates_left: int  # more such updates before the most-worn block reaches its endurance
    replaced: list[str] = field(default_factory=list)  # bundle ids this one replaced
    unchanged: bool = False  # the very same bundle was already stored: nothing written
    notes: list[str] = field(default_factory=list)


def host_stage(entry: ArtifactEntry) -> str | None:
    """Where the kernel's lifecycle ended on the host (None: the bundle does not say)."""
    info = entry.seed_kernel
    return info.lifecycle[-1].dst if info is not None and info.lifecycle else None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _blocks(n: int) -> int:
    return -(-n // BLOCK_BYTES)


class KernelStore:
    def __init__(self, storage: FlashStorage, sectors: int = DEFAULT_SECTORS) -> None:
        self.storage = storage
        self.sectors = sectors

    @property
    def folder(self) -> Path:
        return self.storage.root / STORE_DIR

    # ------------------------------------------------------------------ index

    def index(self) -> dict[str, Any]:
        """The index as stored, or what an older layout migrates to (nothing is written here)."""
        raw = self.storage.read_json(INDEX)
        if isinstance(raw, dict) and raw.get("format") == FORMAT:
            idx = raw
        else:
            idx = {"format": FORMAT, "entries": [], "erase_counts": [], "next_block": 0}
            legacy = self.storage.read_json(LEGACY_LIST)
            if isinstance(legacy, list):
                idx["entries"] = [_from_legacy(e) for e in legacy if isinstance(e, dict) and e.get("file")]
            if isinstance(
                raw, dict
            ):  # the OTA path's old index: the wear it counted is real; its .bin kernels go
                idx["erase_counts"], idx["next_block"] = raw.get("erase_counts"), raw.get("next_block", 0)
        counts = idx.get("erase_counts")
        if not isinstance(counts, list) or not all(isinstance(c, int) for c in counts):
            counts = []
        idx["erase_counts"] = (counts + [0] * self.sectors)[: max(self.sectors, len(counts))]
        idx["next_block"] = int(idx.get("next_block") or 0) % len(idx["erase_counts"])
        return idx

    def entries(self) -> list[dict[str, Any]]:
        return [e for e in self.index()["entries"] if isinstance(e, dict)]

    def kernels(self) -> dict[str, dict[str, Any]]:
        """Kernel name -> where it sits and which stored bundle holds it."""
        out: dict[str, dict[str, Any]] = {}
        for e in self.entries():
            for name in e.get("kernels", []):
                out[name] = {k: e.get(k) for k in ("bundle_id", "version", "base", "sites", "via", "file")}
        return out

    # ------------------------------------------------------------------ install

    def install(
        self,
        bundle_path: Path,
        key: Any,
        base: Bundle,
        *,
        via: str = "flash",
        device: str = "the device",
        image_bytes: int | None = None,
    ) -> KernelInstall:
        """Verify a kernel-only bundle against the trusted ``key`` and the ``base`` the device runs, then store it."""
        path = Path(bundle_path)
        m = verify_kernel_bundle(path, key, base, device).manifest
        data = path.read_bytes()
        sha = _sha256(data)
        names = [k.name for k in m.kernels()]
        sites = sorted({int(k.site) for k in m.kernels() if k.site is not None})
        stages = {k.name: host_stage(k) for k in m.kernels()}
        notes = [
            f"kernel {name} ended {stage} on the host: the runtime will refuse to bring it live"
            for name, stage in stages.items()
            if stage is not None and stage != "FOSSILIZED"
        ]
        idx = self.index()
        counts: list[int] = list(idx["erase_counts"])
        full = _blocks(image_bytes or len(data))
        entries = [e for e in idx["entries"] if isinstance(e, dict)]
        if any(e.get("sha256") == sha for e in entries):
            worst = max(counts)
            return KernelInstall(
                m.bundle_id,
                m.version,
                names,
                sites,
                len(data),
                0,
                full,
                worst,
                self._updates_left(worst, _blocks(len(data))),
                unchanged=True,
                notes=[*notes, f"{m.bundle_id} is already in the kernel store: nothing written"],
            )
        # anti-rollback on every path (flash, OTA): above the kernel security counter, or refused
        security = SecureStore(self.storage)
        floor = max([security.counter("kernel"), *(int(e.get("version") or 0) for e in entries)])
        refusal = refuse_not_newer("kernel bundle", m.version, floor, device)
        if refusal:
            raise KernelStoreError(refusal)
        replaced = [
            e
            for e in entries
            if e.get("base") == m.base_checkpoint
            and (set(e.get("sites", [])) & set(sites) or set(e.get("kernels", [])) & set(names))
        ]
        for e in replaced:
            if int(e.get("version", 1)) > m.version:
                raise KernelStoreError(
                    f"kernel bundle version {m.version} is older than the stored {e.get('bundle_id')} "
                    f"(v{e.get('version')}) for the same sites (no downgrades)"
                )
        need = _blocks(len(data))
        kept = [e for e in entries if e not in replaced]
        used = sum(_blocks(int(e.get("bytes", 0))) for e in kept)
        if used + need > self.sectors:
            raise KernelStoreError(
                f"kernel bundle {m.bundle_id} ({len(data):,} B, {need} blocks) does not fit the kernel store: "
                f"{used} of its {self.sectors} blocks hold other kernels"
            )
        block = int(idx["next_block"])
        for _ in range(need):  # the ring: erase the next blocks, oldest data first
            counts[block] += 1
            block = (block + 1) % len(counts)
        fname = f"{m.bundle_id}.kedge"
        self.storage.write_atomic(f"{STORE_DIR}/{fname}", data)
        patient = (m.model_extra or {}).get("patient") or {}
        kept.append(
            {
                "bundle_id": m.bundle_id,
                "file": fname,
                "base": m.base_checkpoint,
                "target": m.target,
                "sites": sites,
                "kernels": names,
                "host_stages": stages,
                "version": m.version,
                "bytes": len(data),
                "sha256": sha,
                "record": patient.get("record") if isinstance(patient, dict) else None,
                "via": via,
                "written_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
            }
        )
        idx.update(entries=kept, erase_counts=counts, next_block=block)
        self.storage.write_json(INDEX, idx)  # the commit: from here the store holds the new bundle
        security.advance("kernel", m.version)  # a cut before this: the stored entry's version holds the floor
        self.sweep(idx)
        worst = max(counts)
        ids = [str(e.get("bundle_id")) for e in replaced]
        if ids:
            notes.append(f"replaces {', '.join(ids)}")
        return KernelInstall(
            m.bundle_id,
            m.version,
            names,
            sites,
            len(data),
            need,
            full,
            worst,
            self._updates_left(worst, need),
            replaced=ids,
            notes=notes,
        )

    def _updates_left(self, worst: int, per_update: int) -> int:
        return (ENDURANCE_CYCLES - worst) * self.sectors // max(1, per_update)

    def sweep(self, idx: dict[str, Any] | None = None) -> list[Path]:
        """Delete what no entry names (replaced bundles, a migrated layout, a file a power cut left unnamed).
        Only once the index on flash is in this format: before that, the older layout is still the truth."""
        idx = idx if idx is not None else self.storage.read_json(INDEX)
        if not isinstance(idx, dict) or idx.get("format") != FORMAT or not self.folder.is_dir():
            return []
        keep = {Path(INDEX).name} | {
            str(e.get("file")) for e in idx.get("entries", []) if isinstance(e, dict)
        }
        removed = []
        for p in self.folder.iterdir():
            if p.is_file() and p.name not in keep:
                p.unlink(missing_ok=True)
                removed.append(p)
        return removed

    # ------------------------------------------------------------------ boot

    def bundles_for(self, base: Bundle, key: Any) -> tuple[list[Bundle], list[str]]:
        """The stored bundles for ``base`` (checkpoint and target), verified again, in the order they were
        installed; and why any stored for it were skipped (missing, damaged, no longer verifying, no longer
        fitting the base: :mod:`kasmina_edge.core.kernel_fit`)."""
        bm = base.manifest
        out: list[Bundle] = []
        skipped: list[str] = []
        for e in self.entries():
            if e.get("base") != bm.base_checkpoint:
                continue
            path = self.folder / str(e.get("file"))
            try:
                if not path.is_file() or _sha256(path.read_bytes()) != e.get("sha256"):
                    raise KernelStoreError(
                        f"kernel bundle {e.get('bundle_id')}: missing or damaged in the store"
                    )
                bundle = read_bundle(path, key)
            except (KernelStoreError, BundleError) as exc:
                skipped.append(str(exc))
                continue
            problem = kernel_bundle_misfit(bundle.manifest, bm)
            if problem is not None:  # the same rule as at install: a store written by older code may hold one
                skipped.append(f"kernel bundle {e.get('bundle_id')}: {problem}")
                continue
            out.append(bundle)
        return out, skipped


def verify_kernel_bundle(path: Path, key: Any, base: Bundle, device: str = "the device") -> Bundle:
    """The bundle at ``path``, verified (signature, every hash) and checked against ``base``; else one line."""
    try:
        bundle = read_bundle(path, key)
    except BundleError as exc:
        raise KernelStoreError(f"kernel bundle refused: {exc}") from None
    problem = kernel_bundle_misfit(bundle.manifest, base.manifest, device=device)
    if problem is not None:
        raise KernelStoreError(problem)
    return bundle


def _from_legacy(e: dict[str, Any]) -> dict[str, Any]:
    """An entry of the flash path's old ``store.json`` as an index entry (its bundle file stays where it is)."""
    return {
        "bundle_id": e.get("bundle_id"),
        "file": e.get("file"),
        "base": e.get("base"),
        "target": e.get("target"),
        "sites": list(e.get("sites", [])),
        "kernels": list(e.get("kernels", [])),
        "host_stages": {},
        "version": int(e.get("version", 1)),
        "bytes": int(e.get("bytes", 0)),
        "sha256": e.get("sha256"),
        "record": e.get("record"),
        "via": "flash",
        "written_at": e.get("written_at"),
    }
