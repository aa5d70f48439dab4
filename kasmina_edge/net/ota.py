"""Over-the-air updates: the offer, the transfer sized for the link, and the operator's side of it.

An update starts with a signed ``ota-offer`` command on ``kasmina/<fleet>/<device>/ota`` (the contracts' HMAC
envelope: a forged or replayed offer is refused like any command). Its arguments describe the bundle (id,
version, kind ``full`` or ``kernels``, size, SHA-256) and the transfer:

* **chunks** (broadband links): the device pulls chunks of ``chunk_bytes`` by index with ``ota_req`` uplinks,
  checks each against the SHA-256 listed in the offer (a tampered chunk is refused and asked for again), keeps
  them on flash and resumes where it stopped after an interruption or a reboot;
* **fragments** (LoRaWAN): the network pushes ``n`` data fragments and ``m`` parity fragments sized for the data
  rate (:mod:`kasmina_edge.net.fec`) in a multicast (Class C) session paced by the gateway's downlink duty cycle;
  the device needs any ``~n`` of them, so 20 % loss costs no retransmission.

Either way the device verifies the whole bundle (SHA-256, then the Ed25519 signature and every artifact hash when
it flashes it) before it writes the inactive A/B slot or its kernel store. Binary messages on the ota topic::

    0xF1 | session (2 B) | index (2 B) | fragment bytes
    0xF2 | session (2 B) | index (2 B) | chunk bytes
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kasmina_edge.contracts.commands import sign, verify_ack
from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.core.airtime import time_on_air_s
from kasmina_edge.core.profiles import LoRaProfile, NetworkProfile
from kasmina_edge.net.fec import FragmentPlan, encode_fragments

FRAGMENT_TAG = 0xF1
CHUNK_TAG = 0xF2
OTA_HEADER = struct.Struct(">BHH")
BROADBAND_CHUNK_BYTES = 1024
REQUEST_WINDOW = 8  # chunks asked for at once
REQ_WIRE_BYTES = 6  # an ota_req on the air: tag, session, next index, count
REPORT_WIRE_BYTES = 10
FEC_REDUNDANCY = 0.5
LORA_MULTICAST_DR_NOTE = "Class C multicast at the unicast data rate; the gateway's g3 sub-band allows 10 %"


class OtaError(KasminaError):
    """An update that cannot be offered (unreadable bundle, link that cannot carry it)."""


@dataclass(frozen=True)
class TransferPlan:
    mode: str  # "chunks" or "fragments"
    piece_bytes: int
    pieces: int
    parity: int
    estimate_s: float  # how long the transfer takes under the link's limits, nothing lost
    note: str

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "piece_bytes": self.piece_bytes,
            "pieces": self.pieces,
            "parity": self.parity,
            "estimate_s": round(self.estimate_s, 1),
            "note": self.note,
        }


def plan_transfer(profile: NetworkProfile, size: int) -> TransferPlan:
    """Chunk or fragment sizes for ``size`` bytes on this link, and how long it takes there."""
    if isinstance(profile, LoRaProfile):
        piece = profile.max_payload_bytes - OTA_HEADER.size
        if piece < 8:
            raise OtaError(
                f"{profile.name}: {profile.max_payload_bytes} B downlinks are too small to fragment into"
            )
        fplan = FragmentPlan.for_data(size, piece, FEC_REDUNDANCY)
        airtime = time_on_air_s(profile, piece + OTA_HEADER.size)
        duty = profile.downlink_duty_cycle or 1.0
        # gateway time-off after each fragment: airtime x (1/dc - 1); US915 has no duty cycle, only dwell
        per_fragment = airtime / duty if profile.downlink_duty_cycle is not None else airtime + 0.05
        # the device needs ~n of the n+m (a handful more than n at worst, see tests/net/test_ota.py)
        return TransferPlan(
            "fragments",
            piece,
            fplan.n,
            fplan.m,
            per_fragment * fplan.n,
            f"{fplan.n}+{fplan.m} fragments of {piece} B; {LORA_MULTICAST_DR_NOTE}; "
            f"unicast Class A at fair use (10 downlinks/day) would take {math.ceil(fplan.n / 10)} days",
        )
    chunk = min(BROADBAND_CHUNK_BYTES, profile.max_payload_bytes - OTA_HEADER.size)
    pieces = max(1, math.ceil(size / chunk))
    rtt = 2 * profile.latency.median_s
    rounds = math.ceil(pieces / REQUEST_WINDOW)
    estimate = rounds * rtt + size * 8 / profile.downlink_bps
    return TransferPlan(
        "chunks",
        chunk,
        pieces,
        0,
        estimate,
        f"{pieces} chunks of {chunk} B pulled {REQUEST_WINDOW} at a time",
    )


def chunk_hashes(data: bytes, chunk: int) -> list[str]:
    return [hashlib.sha256(data[i : i + chunk]).hexdigest() for i in range(0, len(data), chunk)] or [
        hashlib.sha256(b"").hexdigest()
    ]


def offer_args(
    bundle_path: Path, profile: NetworkProfile, session: int, keys: Path | None = None
) -> tuple[dict[str, Any], bytes, TransferPlan]:
    """The ``ota-offer`` arguments for a bundle, its bytes, and the transfer plan (``keys`` verify it first)."""
    from kasmina_edge.contracts.bundle import BundleError, read_bundle

    if not Path(bundle_path).is_file():
        raise OtaError(f"{bundle_path}: no such bundle")
    data = Path(bundle_path).read_bytes()
    try:
        manifest = read_bundle(bundle_path, keys).manifest  # refuse to offer what does not even verify here
    except BundleError as exc:
        raise OtaError(f"{bundle_path}: {exc}") from None
    plan = plan_transfer(profile, len(data))
    args: dict[str, Any] = {
        "session": session,
        "bundle_id": manifest.bundle_id,
        "version": manifest.version,
        "kind": manifest.kind,
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "mode": plan.mode,
        "piece_bytes": plan.piece_bytes,
        "pieces": plan.pieces,
        "parity": plan.parity,
    }
    if plan.mode == "chunks":
        args["chunk_sha256"] = chunk_hashes(data, plan.piece_bytes)
    return args, data, plan


def fragment_messages(data: bytes, args: dict[str, Any]) -> list[bytes]:
    plan = FragmentPlan(
        int(args["bytes"]), int(args["piece_bytes"]), int(args["pieces"]), int(args["parity"])
    )
    return [
        OTA_HEADER.pack(FRAGMENT_TAG, args["session"], i) + f
        for i, f in enumerate(encode_fragments(data, plan))
    ]


def chunk_message(data: bytes, args: dict[str, Any], index: int) -> bytes:
    size = int(args["piece_bytes"])
    return OTA_HEADER.pack(CHUNK_TAG, args["session"], index) + data[index * size : (index + 1) * size]


# --------------------------------------------------------------------------------------------- operator side


class OtaServer:
    """The operator's side of one update, independent of the transport: offer (again, signed afresh, until the
    device says it is receiving), serve the chunks it asks for, push fragments once it listens, keep its report."""

    def __init__(
        self,
        key: bytes,
        device: str,
        args: dict[str, Any],
        data: bytes,
        send: Callable[[bytes], None],
        *,
        retry_s: float = 30.0,
        tamper: Callable[[int, bytes], bytes] | None = None,
        audit: Any = None,
    ) -> None:
        self.key, self.device, self.args, self.data = key, device, args, data
        self.send = send
        self.retry_s = retry_s
        self.tamper = tamper
        self.audit = audit
        self.accepted = False
        self.final: dict[str, Any] | None = None
        self.offers = 0
        self.last_offer = -math.inf
        self.chunks_served = 0
        self.fragments_sent = 0
        self.reports: list[dict[str, Any]] = []
        self.forged_reports = 0

    def _piece(self, index: int, msg: bytes) -> None:
        self.send(self.tamper(index, msg) if self.tamper is not None else msg)

    def tick(self, now: float) -> None:
        if self.accepted or self.final is not None or now - self.last_offer < self.retry_s:
            return
        offer = sign(self.key, self.device, "ota-offer", self.args)
        if self.audit is not None:
            self.audit.append(
                "ota_offer",
                device=self.device,
                nonce=offer.command.nonce,
                bundle_id=self.args["bundle_id"],
                version=self.args["version"],
                bytes=self.args["bytes"],
                mode=self.args["mode"],
            )
        self.send(offer.to_json().encode())
        self.offers += 1
        self.last_offer = now

    def on_request(self, body: dict[str, Any]) -> None:
        if body.get("session") != self.args["session"]:
            return
        self.accepted = True
        for index in body.get("chunks", []):
            if isinstance(index, int) and not isinstance(index, bool) and 0 <= index < self.args["pieces"]:
                self._piece(index, chunk_message(self.data, self.args, index))
                self.chunks_served += 1

    def on_report(self, body: dict[str, Any]) -> None:
        if body.get("session") != self.args["session"]:
            return
        if not verify_ack(self.key, body):  # anyone on the broker can publish a report; only the device signs one
            self.forged_reports += 1
            if self.audit is not None:
                self.audit.append("forged_report", device=self.device, status=body.get("status"))
            return
        self.reports.append(body)
        if body.get("status") in ("receiving", "resuming") and not self.accepted:
            self.accepted = True
            if self.args["mode"] == "fragments":
                for i, msg in enumerate(fragment_messages(self.data, self.args)):
                    self._piece(i, msg)
                    self.fragments_sent += 1
        if body.get("final"):
            self.final = body
            if self.audit is not None:
                self.audit.append("ota_result", device=self.device, status=body.get("status"), report=body)


@dataclass
class OtaResult:
    device: str
    status: str  # the device's final report status, or "timeout"
    report: dict[str, Any] | None
    plan: TransferPlan
    seconds: float
    offers: int = 0
    chunks_served: int = 0
    fragments_sent: int = 0
    reports: list[dict[str, Any]] = field(default_factory=list)


def run_ota(
    url: str,
    device: str,
    bundle_path: Path,
    key: bytes,
    profile: NetworkProfile,
    *,
    fleet: str = "default",
    timeout_s: float = 120.0,
    session: int | None = None,
    keys: Path | None = None,
    audit: Any = None,
    tls: Any = None,
    retry_s: float = 15.0,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    username: str | None = None,
    password: str | None = None,
) -> OtaResult:
    """Offer ``bundle_path`` to ``device`` over MQTT and serve the transfer until the device's final report."""
    import secrets

    from kasmina_edge.net import topics
    from kasmina_edge.net.mqtt import MqttClient

    session = secrets.randbelow(1 << 16) if session is None else session
    args, data, plan = offer_args(bundle_path, profile, session, keys)
    ota_topic = topics.ota(fleet, device)
    client = MqttClient(
        url, f"kasmina-ota-{secrets.token_hex(4)}", tls=tls, username=username, password=password
    )
    lock = threading.Lock()

    def publish(msg: bytes) -> None:
        client.publish(ota_topic, msg, qos=1)

    server = OtaServer(key, device, args, data, publish, retry_s=retry_s, audit=audit)

    def handler(kind: str) -> Callable[[str, bytes], None]:
        def on_message(topic: str, payload: bytes) -> None:
            try:
                body = json.loads(payload)
            except ValueError:
                return
            if not isinstance(body, dict):
                return
            with lock:
                (server.on_request if kind == "ota_req" else server.on_report)(body)
            if kind == "ota_report" and on_progress is not None and verify_ack(key, body):
                on_progress(body)  # only what the device signed is shown

        return on_message

    client.subscribe(topics.telemetry(fleet, device, "ota_req"), handler("ota_req"), qos=1)
    client.subscribe(topics.telemetry(fleet, device, "ota_report"), handler("ota_report"), qos=1)
    client.connect()
    t0 = time.monotonic()
    try:
        while server.final is None and time.monotonic() - t0 < timeout_s:
            with lock:
                server.tick(time.monotonic())
            time.sleep(0.1)
    finally:
        client.close()
    final = server.final
    return OtaResult(
        device,
        str(final.get("status")) if final else "timeout",
        final,
        plan,
        time.monotonic() - t0,
        server.offers,
        server.chunks_served,
        server.fragments_sent,
        server.reports,
    )
