"""The emulated device's side of an over-the-air update: receive, resume, verify, flash, boot, report.

:class:`OtaReceiver` takes the signed ``ota-offer`` (through the device's command handler, so a forged or
replayed offer never starts anything), then the pieces: chunks it pulls itself on broadband links (each checked
against the SHA-256 the offer lists; a tampered chunk is refused and asked for again) or FEC fragments pushed in a
LoRaWAN multicast session (:mod:`kasmina_edge.net.fec`: any ~n of n+m fragments make the bundle). Every piece goes
to the emulated flash as it arrives, with the transfer state, so a reboot or a dropped link resumes where it
stopped. The assembled bundle must match the offer's SHA-256; then it goes through the device's own ``flash``,
exactly as ``kasmina-edge flash`` would take it: a full image (signature, every artifact hash, target, size, no
downgrade) into the inactive A/B slot, a kernel-only bundle into the device's one
:class:`~firmware_sim.kernel_store.KernelStore` (signature, base, target, sites and grids, no downgrade). Anything
refused leaves the running slot and the stored kernels as they were. With ``auto_boot`` the device boots the new
slot as a trial, runs the probation check and confirms it or rolls back, and says which in its final report.

Kernels stored while the device runs go live at its next boot (``live: "next boot"`` in the report): the running
image is not changed under the runtime; the next boot verifies the stored bundle again and loads it.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from typing import Any

from firmware_sim.device import BootResult, DeviceError, EmulatedDevice
from firmware_sim.kernel_store import LIVE_AT
from firmware_sim.security import refuse_not_newer
from kasmina_edge.contracts.bundle import BundleError
from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.net.fec import FecError, FragmentDecoder, FragmentPlan
from kasmina_edge.net.ota import (
    CHUNK_TAG,
    FRAGMENT_TAG,
    OTA_HEADER,
    REPORT_WIRE_BYTES,
    REQ_WIRE_BYTES,
    REQUEST_WINDOW,
)

STATE = "ota/state.json"
INCOMING = "ota/incoming.kedge"
REQUEST_TIMEOUT_S = 10.0


class OtaRefused(KasminaError):
    """An offer the device will not take (malformed, too big, older than what it runs)."""


_REQUIRED = {
    "session": int,
    "bundle_id": str,
    "version": int,
    "kind": str,
    "bytes": int,
    "sha256": str,
    "mode": str,
    "piece_bytes": int,
    "pieces": int,
    "parity": int,
}
MAX_BUNDLE_BYTES = 16 * 1024 * 1024


class OtaReceiver:
    def __init__(
        self,
        device: EmulatedDevice,
        link: Any,
        *,
        auto_boot: bool = False,
        probation: Callable[[BootResult], bool] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.device = device
        self.storage = device.storage
        self.link = link
        self.auto_boot = auto_boot
        self.probation = probation
        self.clock = clock
        self.offer: dict[str, Any] | None = None
        self.have: set[int] = set()
        self.decoder: FragmentDecoder | None = None
        self.refused_pieces = 0
        self.requested_at = -1e18
        self.finished: dict[str, Any] | None = None
        self.reports: list[dict[str, Any]] = []
        # signs each report (the device's ack key, set by RuntimeTelemetry.enable_ota): the operator's server
        # believes only a report the device signed
        self.signer: Callable[[dict[str, Any]], dict[str, Any]] | None = None
        self._resume()

    # ------------------------------------------------------------------ state on flash

    def _resume(self) -> None:
        st = self.storage.read_json(STATE)
        if not isinstance(st, dict) or st.get("offer") is None or st.get("done"):
            return
        self.offer = st["offer"]
        self.have = {int(i) for i in st.get("have", [])}
        if self.offer["mode"] == "fragments":
            self.decoder = FragmentDecoder(self._fplan())
            for i in sorted(self.have):
                self.decoder.add(i, self._piece(i))

    def _save(self, done: bool = False) -> None:
        self.storage.write_json(STATE, {"offer": self.offer, "have": sorted(self.have), "done": done})

    def _piece(self, i: int) -> bytes:
        return (self.storage.root / "ota" / "pieces" / f"{i}.bin").read_bytes()

    def _fplan(self) -> FragmentPlan:
        o = self.offer
        assert o is not None
        return FragmentPlan(int(o["bytes"]), int(o["piece_bytes"]), int(o["pieces"]), int(o["parity"]))

    # ------------------------------------------------------------------ offer (a signed command's action)

    def on_offer(self, args: Mapping[str, Any], envelope: Any = None) -> dict[str, Any]:
        for key, kind in _REQUIRED.items():
            value = args.get(key)
            if isinstance(value, bool) or not isinstance(value, kind):
                raise OtaRefused(f"ota-offer: {key} missing or not {kind.__name__}")
        if args["mode"] not in ("chunks", "fragments") or args["kind"] not in ("full", "kernels"):
            raise OtaRefused(f"ota-offer: mode {args['mode']!r} / kind {args['kind']!r} unknown")
        if not 0 < args["bytes"] <= MAX_BUNDLE_BYTES or args["piece_bytes"] < 1 or args["pieces"] < 1:
            raise OtaRefused(f"ota-offer: {args['bytes']} B in {args['pieces']} pieces is not a transfer")
        if args["mode"] == "chunks":
            hashes = args.get("chunk_sha256")
            if not isinstance(hashes, list) or len(hashes) != args["pieces"]:
                raise OtaRefused("ota-offer: chunk_sha256 must list one hash per chunk")
        # refused before a byte is transferred; the flash path checks again on the signed manifest
        counter = self.device.security().counter("image" if args["kind"] == "full" else "kernel")
        refusal = refuse_not_newer(f"ota-offer: {args['kind']}", args["version"], counter, str(self.device.address))
        stored = {e.get("sha256") for e in self.device.kernel_store().entries()}
        if refusal and not (args["kind"] == "kernels" and args["sha256"] in stored):  # the same bundle: a no-op
            raise OtaRefused(refusal)
        if (
            self.offer is not None
            and self.offer.get("session") == args["session"]
            and self.offer["sha256"] == args["sha256"]
        ):
            return {"session": args["session"], "status": "resuming", "have": len(self.have)}
        self.offer = dict(args)
        self.have = set()
        self.finished = None
        self.decoder = FragmentDecoder(self._fplan()) if args["mode"] == "fragments" else None
        self.requested_at = -1e18
        self._save()
        self._report("receiving", have=0)
        return {"session": args["session"], "status": "receiving"}

    # ------------------------------------------------------------------ pieces

    def on_downlink(self, payload: bytes, at: float) -> None:
        if len(payload) < OTA_HEADER.size or self.offer is None or self.finished is not None:
            return
        tag, session, index = OTA_HEADER.unpack_from(payload)
        body = payload[OTA_HEADER.size :]
        if session != self.offer["session"] or index in self.have:
            return
        if tag == CHUNK_TAG and self.offer["mode"] == "chunks":
            if not 0 <= index < self.offer["pieces"]:
                return
            if hashlib.sha256(body).hexdigest() != self.offer["chunk_sha256"][index]:
                self.refused_pieces += 1  # tampered or damaged: not stored, asked for again
                self.requested_at = -1e18
                return
        elif tag == FRAGMENT_TAG and self.offer["mode"] == "fragments":
            assert self.decoder is not None
            try:
                self.decoder.add(index, body)
            except FecError:
                self.refused_pieces += 1
                return
        else:
            return
        self.storage.write_atomic(f"ota/pieces/{index}.bin", body)
        self.have.add(index)
        self._save()
        if self._complete():
            self._finish()

    def _complete(self) -> bool:
        assert self.offer is not None
        if self.offer["mode"] == "fragments":
            return self.decoder is not None and self.decoder.done
        return len(self.have) == self.offer["pieces"]

    def tick(self, now: float) -> None:
        """Chunked transfers: ask for the next missing chunks (again, after a timeout)."""
        o = self.offer
        if o is None or self.finished is not None or o["mode"] != "chunks":
            return
        if now - self.requested_at < REQUEST_TIMEOUT_S:
            return
        missing = [i for i in range(o["pieces"]) if i not in self.have][:REQUEST_WINDOW]
        if missing:
            self.link.send_control("ota_req", {"session": o["session"], "chunks": missing}, REQ_WIRE_BYTES)
            self.requested_at = now

    # ------------------------------------------------------------------ finish

    def _assemble(self) -> bytes:
        assert self.offer is not None
        if self.offer["mode"] == "fragments":
            assert self.decoder is not None
            return self.decoder.data()
        return b"".join(self._piece(i) for i in range(self.offer["pieces"]))[: self.offer["bytes"]]

    def _finish(self) -> None:
        o = self.offer
        assert o is not None
        data = self._assemble()
        if hashlib.sha256(data).hexdigest() != o["sha256"]:
            self._final("refused", reason="assembled bundle does not match the offer's SHA-256")
            return
        path = self.storage.write_atomic(INCOMING, data)
        try:
            if o["kind"] == "kernels":
                self._install_kernels(path)
            else:
                self._install_image(path)
        except (KasminaError, BundleError) as exc:
            self._final("refused", reason=str(exc))
        finally:
            path.unlink(missing_ok=True)

    def _install_kernels(self, path: Any) -> None:
        """The same way in as `kasmina-edge flash` of a kernel-only bundle: the device's one kernel store."""
        done = self.device.flash(path, via="ota", expect_kind="kernels").kernels
        assert done is not None  # a kernels bundle always comes back with what the store did
        self._final(
            "installed",
            store="kernels",
            kernels=done.kernels,
            sites=done.sites,
            unchanged=done.unchanged,
            live=LIVE_AT,
            erase_blocks=done.erase_blocks,
            full_image_blocks=done.full_image_blocks,
            max_block_cycles=done.max_block_cycles,
            updates_left=done.updates_left,
        )

    def _install_image(self, path: Any) -> None:
        result = self.device.flash(path, via="ota", expect_kind="full")
        if not self.auto_boot:
            self._final(
                "flashed", slot=result.slot, version=result.version, note="boots as a trial at next start"
            )
            return
        try:
            boot = self.device.boot()
        except DeviceError as exc:
            self._final("rolled_back", slot=result.slot, reason=str(exc))
            return
        ok = boot.trial and boot.slot == result.slot and (self.probation(boot) if self.probation else True)
        if ok:
            self.device.confirm()
            self._final("probation_passed", slot=boot.slot, version=result.version)
            return
        self.device.reject("probation failed after OTA")
        fallback = self.device.boot()
        self._final(
            "rolled_back",
            slot=fallback.slot,
            reason="probation failed" if boot.trial else "; ".join(boot.fallbacks),
        )

    def _report(self, status: str, **extra: Any) -> None:
        o = self.offer or {}
        body = {
            "session": o.get("session"),
            "bundle_id": o.get("bundle_id"),
            "status": status,
            "at": round(self.clock(), 3),
            **extra,
        }
        if self.signer is not None:
            body = self.signer(body)
        self.reports.append(body)
        self.link.send_control("ota_report", body, REPORT_WIRE_BYTES)

    def _final(self, status: str, **extra: Any) -> None:
        extra.update(pieces=len(self.have), refused_pieces=self.refused_pieces)
        if self.decoder is not None:
            extra.update(
                fragments_received=self.decoder.received,
                fragments_needed=self.offer["pieces"] if self.offer else None,
            )
        self.finished = {"status": status, **extra}
        self._save(done=True)
        self._report(status, final=True, **extra)
