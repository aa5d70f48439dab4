"""The emulated device's telemetry hook: runtime events become contracts records, queued on flash, sent over a link.

:class:`RuntimeTelemetry` is the hook ``run_stream`` calls: ``on_event`` with every runtime event (the typed records
of ``contracts.events``: beats, seed transitions and gate verdicts matter here), ``tick`` with the signal time after
each chunk. A seed transition becomes a ``SeedEvent`` and a gate verdict a ``GateEvent``
(:mod:`firmware_sim.telemetry_records`); beats feed the periodic beat counts and the rhythm alarms
(:mod:`firmware_sim.rhythm_alarms`: VT and PVC runs, asystole). A seed culled for a ``health_*`` reason (the breaker
opening) is critical through its priority. Every ``summary_every_s`` it adds a heartbeat and link statistics.

Downlinks are signed commands (:mod:`firmware_sim.device_commands` carries them out) and update pieces (the OTA
receiver, :mod:`firmware_sim.ota`). The queue lives on the emulated flash (:mod:`firmware_sim.flash_queue`).
:func:`open_device_telemetry` assembles the whole for ``kasmina-edge run --link``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from firmware_sim.device_commands import SETTABLE, DeviceCommandError, DeviceCommands
from firmware_sim.flash_queue import QUEUE_FILE, FlashQueue
from firmware_sim.rhythm_alarms import RhythmAlarms
from firmware_sim.storage import FlashStorage
from firmware_sim.telemetry_records import (
    KernelIds,
    beat_counts,
    empty_counts,
    gate_event,
    heartbeat,
    link_stats,
    seed_event,
)
from kasmina_edge.contracts.commands import NonceLedger, PersistentLedger, sign_ack
from kasmina_edge.contracts.events import BeatClassified, GateVerdict, RuntimeEvent, SeedTransition
from kasmina_edge.contracts.telemetry import Record
from kasmina_edge.net.audit import AuditLog, load_or_create_key
from kasmina_edge.net.commands import ACK_WIRE_BYTES, CommandHandler, freshness_window_s
from kasmina_edge.net.priority import Priority
from kasmina_edge.net.session import DeviceLink

# Importable from here as before the split (the CLI, the dashboard and the tests name them by this module).
__all__ = [
    "AUDIT_FILE",
    "AUDIT_KEY_FILE",
    "NONCE_LEDGER_FILE",
    "QUEUE_FILE",
    "SETTABLE",
    "DeviceCommandError",
    "FlashQueue",
    "LocalTransport",
    "RuntimeTelemetry",
    "open_device_telemetry",
    "parse_link_spec",
]

AUDIT_FILE = "audit.jsonl"  # the device's command audit log (append-only, keyed hash chain, signed head)
AUDIT_KEY_FILE = "secure/audit.key"  # the device's audit key: secure storage, never sent
NONCE_LEDGER_FILE = "secure/nonces.json"  # the command nonce ledger: survives reboot and power loss
COUNTS_EVERY_S = 60.0


class RuntimeTelemetry:
    """Runtime events -> records -> the device's uplink queue and link."""

    def __init__(
        self,
        link: DeviceLink,
        flash: FlashQueue | None = None,
        *,
        epoch_unix: float | None = None,
        kernel_ids: dict[str, int] | None = None,
        status: Callable[[], dict[str, Any]] | None = None,
        summary_every_s: float | None = None,
        downlinks: Callable[[], list[tuple[str, bytes]]] | None = None,
    ) -> None:
        self.link = link
        self.flash = flash
        if flash is not None:
            link.queue = flash.queue
            link.scheduler.queue = flash.queue
        self.queue = link.queue
        self.epoch_unix = time.time() if epoch_unix is None else epoch_unix
        link.epoch_unix = self.epoch_unix
        self.kernel_id = KernelIds(kernel_ids)
        self.status_fn = status
        self.summary_every_s = summary_every_s or link.scheduler.plan.summary_every_s
        self.downlinks = downlinks
        self.alarms = RhythmAlarms(self.timestamp)
        self.counts = empty_counts()
        self.counts_since = 0.0
        self.next_counts = COUNTS_EVERY_S
        self.next_summary = self.summary_every_s
        self.link_stats_every_s = link.scheduler.plan.link_stats_every_s or self.summary_every_s
        self.next_link_stats = self.link_stats_every_s
        self.now = 0.0
        self.produced: list[tuple[int, float, Record]] = []  # (fseq, t, record) for tests and benchmarks
        self.keep_produced = False
        self.runtime: Any = None  # the DeviceRuntime, once attached (pause/resume, strips, security alert)
        self.commands: CommandHandler | None = None
        self.device_key: bytes | None = None
        self.paused = False
        self.ota: Any = None  # firmware_sim.ota.OtaReceiver, when updates are enabled
        self.reboot_requested = False  # a signed `reboot`: the runner ends the run after this chunk
        link.on_downlink = self._downlink

    # ------------------------------------------------------------------ records

    def timestamp(self, t: float) -> int:
        """Signal seconds as the record's Unix time."""
        return int(self.epoch_unix + t)

    def submit(self, record: Record, t: float | None = None) -> int:
        at = self.now if t is None else t
        fseq = self.queue.submit(record, at)
        if self.keep_produced:
            self.produced.append((fseq, at, record))
        return fseq

    def submit_priority(self, record: Record, priority: Priority) -> int:
        fseq = self.queue.submit(record, self.now, priority)
        if self.keep_produced:
            self.produced.append((fseq, self.now, record))
        return fseq

    # ------------------------------------------------------------------ commands and updates

    def attach(self, runtime: Any) -> None:
        """The runtime the commands act on (``run_stream`` calls this once the device booted)."""
        self.runtime = runtime
        if self.status_fn is None:
            self.status_fn = lambda: {"battery_pct": 100.0 * float(runtime.platform.battery)}

    def enable_commands(
        self,
        key: bytes,
        audit: AuditLog,
        *,
        clock: Callable[[], float] = time.time,
        ledger: NonceLedger | None = None,
    ) -> None:
        """Signed commands: ``ledger`` keeps the nonces (a :class:`PersistentLedger` on a device: replays are
        refused after a reboot too)."""
        self.device_key = key
        actions = DeviceCommands(self)
        self.commands = CommandHandler(
            self.link.device_id,
            key,
            audit,
            actions.actions(),
            clock=clock,
            window_s=freshness_window_s(self.link.profile),
            on_refused=actions.security_alert,
            ledger=ledger,
        )

    def enable_ota(self, receiver: Any) -> None:
        """Updates: the signed offer becomes the ``ota-offer`` command's action, pieces go to the receiver;
        its reports go out signed with the device's key."""
        self.ota = receiver
        if self.device_key is not None:
            key = self.device_key
            receiver.signer = lambda body: sign_ack(key, body)
        if self.commands is not None:
            self.commands.actions["ota-offer"] = receiver.on_offer

    def _downlink(self, kind: str, payload: bytes, at: float) -> None:
        if kind == "cmd" or (kind == "ota" and payload[:1] == b"{"):  # commands and signed offers
            if self.commands is not None:
                ack = self.commands.handle(payload)
                self.link.send_control("cmd_ack", ack, ACK_WIRE_BYTES)
        elif kind == "ota" and self.ota is not None:
            self.ota.on_downlink(payload, at)

    # ------------------------------------------------------------------ runtime events

    def on_event(self, event: RuntimeEvent) -> None:
        """Beats feed the counts and the rhythm alarms; seed moves and gate verdicts go out as wire records.
        The other events stay in the run log."""
        if isinstance(event, BeatClassified):
            self.counts[event.label if event.label in self.counts else "Q"] += 1
            alarm = self.alarms.on_beat(event.t, event.label, event.confidence)
            if alarm is not None:
                self.submit(alarm, event.t)
        elif isinstance(event, SeedTransition):
            self.submit(seed_event(event, self.timestamp(self.now), self.kernel_id(event.kernel)))
        elif isinstance(event, GateVerdict):
            self.submit(gate_event(event, self.timestamp(self.now), self.kernel_id(event.kernel)))

    # ------------------------------------------------------------------ time

    def _periodic(self, now: float) -> None:
        alarm = self.alarms.asystole(now)
        if alarm is not None:
            self.submit(alarm, now)
        while now >= self.next_counts:
            period = int(round(self.next_counts - self.counts_since))
            self.submit(beat_counts(self.counts, self.timestamp(self.next_counts), period), self.next_counts)
            self.counts = empty_counts()
            self.counts_since = self.next_counts
            self.next_counts += COUNTS_EVERY_S
        while now >= self.next_summary:
            status = self.status_fn() if self.status_fn is not None else {}
            t = self.next_summary
            self.submit(heartbeat(status, self.timestamp(t), t), t)
            self.next_summary += self.summary_every_s
        while now >= self.next_link_stats:
            t = self.next_link_stats
            self.submit(link_stats(self.link, self.timestamp(t), t), t)
            self.next_link_stats += self.link_stats_every_s

    def tick(self, now: float) -> None:
        """After each chunk: periodic records, downlinks that came in, the link, then the queue onto flash."""
        self.now = max(self.now, now)
        if self.downlinks is not None:
            for kind, payload in self.downlinks():
                self.link.queue_downlink(kind, payload, now)
        self._periodic(now)
        if self.ota is not None:
            self.ota.tick(now)
        self.link.tick(now)
        if self.flash is not None:
            self.flash.persist()

    def close(self, now: float | None = None) -> None:
        if now is not None:
            self.tick(now)
        if self.flash is not None:
            self.flash.persist()

    def summary(self) -> dict[str, Any]:
        q, s, led = self.queue.stats, self.link.scheduler.stats, self.link.ledger
        return {
            "link": self.link.profile.name,
            "records": q.submitted,
            "merged": q.merged,
            "queued": len(self.queue),
            "dropped": q.dropped,
            "acked": q.acked,
            "resent": q.resent,
            "uplinks": led.uplinks,
            "delivered": led.delivered,
            "airtime_s": round(led.airtime_s, 3),
            "critical_packets": s.critical_packets,
            "fallback_packets": s.fallback_packets,  # sent at a faster data rate: a record fit none at this one
            "downlinks": led.downlinks_received,
        }


# --------------------------------------------------------------------------------------------- assembly


class LocalTransport:
    """``--link`` without ``--mqtt``: uplinks reach an in-process monitor (no broker), acks come straight back."""

    def __init__(self) -> None:
        from kasmina_edge.net.loopback import LoopbackNetwork

        self.net = LoopbackNetwork()
        self.published = 0

    def publish_uplink(self, uplink: Any, kind: str, qos: int) -> None:
        self.published += 1
        self.net.publish_uplink(uplink, kind, qos)

    def publish_report(self, device: str, kind: str, body: dict[str, Any], arrival_at: float = 0.0) -> None:
        self.net.publish_report(device, kind, body, arrival_at)

    def drain(self) -> list[tuple[str, bytes]]:
        self.net.advance(float("inf"))
        return []

    def close(self) -> None:
        self.net.monitor.flush()


def parse_link_spec(spec: str) -> tuple[str, str | None]:
    """``NAME`` or ``NAME:FAULTS`` (``lorawan-eu868-dr0:outage@600+600,loss:0.05``)."""
    name, _, faults = spec.partition(":")
    return name, faults or None


def open_device_telemetry(
    device: str,
    storage: FlashStorage,
    link_spec: str | None,
    mqtt_url: str | None,
    *,
    fleet: str = "default",
    status: Callable[[], dict[str, Any]] | None = None,
    seed: int = 0,
    emulated: Any = None,
    auth: Any = None,
) -> tuple[RuntimeTelemetry, Any]:
    """The telemetry hook for ``kasmina-edge run --link PROFILE --mqtt URL``; returns it and its transport."""
    from kasmina_edge.core import catalog
    from kasmina_edge.net.faults import FaultInjector
    from kasmina_edge.net.link import Channel

    name, faults = parse_link_spec(link_spec or "wifi")
    profile = catalog.network(name)
    injector = FaultInjector.parse(faults) if faults else None
    transport: Any
    if mqtt_url:
        from kasmina_edge.net.mqtt import MqttDeviceTransport

        # auth: kasmina_edge.net.credentials.MqttAuth (TLS files, user, password from a file or the environment)
        transport = MqttDeviceTransport(
            mqtt_url,
            fleet,
            device,
            tls=getattr(auth, "tls", None),
            username=getattr(auth, "username", None),
            password=getattr(auth, "password", None),
        )
        transport.connect()
    else:
        transport = LocalTransport()
    flash = FlashQueue(storage)
    link = DeviceLink(
        device,
        profile,
        transport,
        queue=flash.queue,
        channel=Channel(profile, faults=injector, seed=seed),
    )
    if isinstance(transport, LocalTransport):
        transport.net.attach(link)
    tel = RuntimeTelemetry(link, flash, status=status, downlinks=transport.drain)
    from kasmina_edge.net.commands import provision_device_key

    tel.enable_commands(
        provision_device_key(storage.root, device),
        AuditLog(storage.root / AUDIT_FILE, key=load_or_create_key(storage.root / AUDIT_KEY_FILE)),
        ledger=PersistentLedger(storage.root / NONCE_LEDGER_FILE),
    )
    if emulated is not None:
        from firmware_sim.ota import OtaReceiver

        tel.enable_ota(OtaReceiver(emulated, link))
    return tel, transport
