"""A separate flash store for seed kernels, so a kernel-only update never rewrites the application image.

MCU flash wears out per erase block (STACK-NOTES: ~10,000 cycles; a 150 KB image costs ~38 blocks per A/B
update). The store is a ring of ``sectors`` erase blocks: each kernel update writes its kernels into the next free
blocks (wear spread evenly), erases only those, and counts every erase per block, so an update reports what it
cost in erase cycles beside what a full-image update would have cost.

Layout under the device folder: ``kernels/index.json`` (installed kernels, version, per-block erase counts) and
``kernels/<name>.bin`` per kernel, both written atomically through :class:`~firmware_sim.storage.FlashStorage`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from firmware_sim.storage import BLOCK_BYTES, FlashStorage
from kasmina_edge.contracts.bundle import Bundle, BundleError, read_bundle
from kasmina_edge.contracts.errors import KasminaError

INDEX = "kernels/index.json"
DEFAULT_SECTORS = 64  # 256 KB of kernel store
ENDURANCE_CYCLES = 10_000  # NOR flash erase endurance (STACK-NOTES, MCUboot's arithmetic)


class KernelStoreError(KasminaError):
    """A kernel update this device refuses (signature, base mismatch, downgrade, store full)."""


@dataclass(frozen=True)
class KernelInstall:
    bundle_id: str | None
    version: int
    kernels: list[str]
    bytes: int
    erase_blocks: int  # blocks this update erased
    full_image_blocks: int  # what rewriting the application slot would have erased
    max_block_cycles: int  # the most-worn block of the store after this update
    updates_left: int  # more such updates before the most-worn block reaches its endurance


class KernelStore:
    def __init__(self, storage: FlashStorage, sectors: int = DEFAULT_SECTORS) -> None:
        self.storage = storage
        self.sectors = sectors

    def index(self) -> dict[str, Any]:
        idx = self.storage.read_json(INDEX)
        if not isinstance(idx, dict):
            idx = {"version": 0, "kernels": {}, "erase_counts": [0] * self.sectors, "next_block": 0}
        return idx

    def kernels(self) -> dict[str, Any]:
        return dict(self.index()["kernels"])

    def install(
        self, bundle_path: Path, key: Any, base: Bundle, *, image_bytes: int | None = None
    ) -> KernelInstall:
        """Verify a kernel-only bundle against the trusted key and the running base, then store its kernels."""
        try:
            bundle = read_bundle(bundle_path, key)
        except BundleError as exc:
            raise KernelStoreError(f"kernel update refused: {exc}") from None
        m = bundle.manifest
        if m.kind != "kernels":
            raise KernelStoreError(
                f"kernel update refused: bundle {m.bundle_id} is a {m.kind} image, not kernels"
            )
        if m.base_checkpoint != base.manifest.base_checkpoint:
            raise KernelStoreError(
                f"kernel update refused: built for base {m.base_checkpoint[:12]}, this device runs "
                f"{base.manifest.base_checkpoint[:12]}"
            )
        idx = self.index()
        if m.version <= int(idx["version"]):
            raise KernelStoreError(
                f"kernel update refused: version {m.version} is not newer than {idx['version']}"
            )
        counts: list[int] = list(idx["erase_counts"])
        block = int(idx["next_block"])
        installed = dict(idx["kernels"])
        total, erased = 0, 0
        for art in m.kernels():
            data = bundle.artifact_bytes(art.name)
            blocks = -(-len(data) // BLOCK_BYTES)
            if blocks > self.sectors:
                raise KernelStoreError(
                    f"kernel {art.name} ({len(data):,} B) does not fit the {self.sectors}-block store"
                )
            for _ in range(blocks):  # the ring: erase the next blocks, oldest data first
                counts[block] += 1
                block = (block + 1) % self.sectors
            erased += blocks
            total += len(data)
            self.storage.write_atomic(f"kernels/{art.name}.bin", data)
            installed[art.name] = {
                "site": art.site,
                "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "bundle_id": m.bundle_id,
                "version": m.version,
            }
        idx.update(
            version=m.version, kernels=installed, erase_counts=counts, next_block=block, bundle_id=m.bundle_id
        )
        self.storage.write_json(INDEX, idx)
        full = -(-(image_bytes or Path(bundle_path).stat().st_size) // BLOCK_BYTES)
        worst = max(counts)
        return KernelInstall(
            m.bundle_id,
            m.version,
            [a.name for a in m.kernels()],
            total,
            erased,
            full,
            worst,
            (ENDURANCE_CYCLES - worst) * self.sectors // max(1, erased),
        )
