"""The emulated device's telemetry: runtime events become contracts records, queued on flash, sent over a link.

:class:`RuntimeTelemetry` is the hook ``run_stream`` calls: ``on_event`` with every runtime event (the typed records
of ``contracts.events``: beats, seed transitions and gate verdicts matter here), ``tick`` with the signal time after
each chunk. A seed transition becomes a ``SeedEvent`` and a gate verdict a ``GateEvent`` (their ``from_*``
constructors in ``contracts.telemetry``), ready for the codec. From beats it makes the periodic
beat counts and detects the rhythm events that must reach a clinician first: a run of three or more ventricular
beats above 100 bpm is a ventricular-tachycardia run (critical), a slower run a PVC run, no beat for 3 s an
asystole (critical). A seed culled for a ``health_*`` reason (the breaker opening) is critical through its
priority. Every ``summary_every_s`` it adds a heartbeat and link statistics.

:class:`FlashQueue` keeps the uplink queue in the emulated flash (``telemetry/queue.json``, written atomically
after each tick that changed it), so records survive a power cut or a restart and keep their sequence numbers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from firmware_sim.storage import BLOCK_BYTES, FlashStorage
from kasmina_edge.contracts.commands import NonceLedger, PersistentLedger, sign_ack
from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.contracts.events import BeatClassified, GateVerdict, RuntimeEvent, SeedTransition
from kasmina_edge.contracts.lifecycle import Stage
from kasmina_edge.contracts.telemetry import (
    AAMI_CLASSES,
    AnomalyEvent,
    AnomalyKind,
    BeatCounts,
    DeviceStatus,
    ErrorFlags,
    GateEvent,
    LinkStats,
    Record,
    SeedEvent,
    Severity,
    Slot,
)
from kasmina_edge.net.audit import AuditLog, load_or_create_key
from kasmina_edge.net.commands import ACK_WIRE_BYTES, CommandHandler, freshness_window_s
from kasmina_edge.net.priority import Priority
from kasmina_edge.net.session import DeviceLink
from kasmina_edge.net.uplink import QueueError, RecordQueue

QUEUE_FILE = "telemetry/queue.json"
AUDIT_FILE = "audit.jsonl"  # the device's command audit log (append-only, keyed hash chain, signed head)
AUDIT_KEY_FILE = "secure/audit.key"  # the device's audit key: secure storage, never sent
NONCE_LEDGER_FILE = "secure/nonces.json"  # the command nonce ledger: survives reboot and power loss
VT_MIN_BEATS = 3
VT_MIN_BPM = 100.0
ASYSTOLE_S = 3.0
COUNTS_EVERY_S = 60.0
SETTABLE = {"summary_every_s": (60.0, 86400.0), "batch_s": (0.0, 60.0)}  # what `send DEVICE set` may change


class DeviceCommandError(KasminaError):
    """A command the device accepted but cannot carry out (bad argument, nothing to send); the handler acks it
    refused. (The operator's side of a command that cannot be sent is ``net.commands.CommandError``.)"""


class FlashQueue:
    """A :class:`RecordQueue` persisted on the emulated flash."""

    def __init__(self, storage: FlashStorage, capacity: int = 256) -> None:
        self.storage = storage
        self.bytes_written = 0
        self.blocks_written = 0
        path = storage.root / QUEUE_FILE
        self.recovered = False
        if path.exists():
            try:
                self.queue = RecordQueue.from_bytes(path.read_bytes())
                self.recovered = True
            except QueueError:
                self.queue = RecordQueue(capacity)
        else:
            self.queue = RecordQueue(capacity)

    def persist(self) -> bool:
        if not self.queue.dirty:
            return False
        data = self.queue.to_bytes()
        self.storage.write_atomic(QUEUE_FILE, data)
        self.bytes_written += len(data)
        self.blocks_written += -(-len(data) // BLOCK_BYTES)
        self.queue.dirty = False
        return True


@dataclass
class RhythmState:
    v_run: int = 0
    v_run_start: float = 0.0
    v_run_reported: bool = False
    last_beat_t: float | None = None
    asystole_reported: bool = False
    last_rr: list[float] = field(default_factory=list)


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
        self.kernel_ids = dict(kernel_ids or {})
        self.status_fn = status
        self.summary_every_s = summary_every_s or link.scheduler.plan.summary_every_s
        self.downlinks = downlinks
        self.rhythm = RhythmState()
        self.counts = dict.fromkeys(AAMI_CLASSES, 0)
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

    def _ts(self, t: float) -> int:
        return int(self.epoch_unix + t)

    def submit(self, record: Record, t: float | None = None) -> int:
        at = self.now if t is None else t
        fseq = self.queue.submit(record, at)
        if self.keep_produced:
            self.produced.append((fseq, at, record))
        return fseq

    def _kernel_id(self, name: str | None) -> int:
        if not name:
            return 0
        if name not in self.kernel_ids:
            self.kernel_ids[name] = len(self.kernel_ids)
        return self.kernel_ids[name]

    # ------------------------------------------------------------------ commands

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
        self.commands = CommandHandler(
            self.link.device_id,
            key,
            audit,
            {
                "pause": self._pause,
                "resume": self._resume,
                "request-strip": self._strip,
                "set": self._set,
                "reboot": self._reboot,
                "terminate-seed": self._terminate_seed,
            },
            clock=clock,
            window_s=freshness_window_s(self.link.profile),
            on_refused=self._security_alert,
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

    def _set_adapt(self, adapt: bool) -> None:
        rt = self.runtime
        if rt is not None and hasattr(rt, "config"):
            rt.config = replace(rt.config, adapt=adapt)

    def _pause(self, args: Any, envelope: Any) -> dict[str, Any]:
        self.paused = True
        self._set_adapt(False)
        return {"adapt": False}

    def _resume(self, args: Any, envelope: Any) -> dict[str, Any]:
        self.paused = False
        self._set_adapt(True)
        return {"adapt": True}

    def _reboot(self, args: Any, envelope: Any) -> dict[str, Any]:
        """The device restarts after the chunk in hand (the ack goes first); what it keeps is what is on flash."""
        if args:
            raise DeviceCommandError(f"reboot takes no arguments (got {', '.join(sorted(args))})")
        self.reboot_requested = True
        return {"reboot": "after the current chunk"}

    def _terminate_seed(self, args: Any, envelope: Any) -> dict[str, Any]:
        """Administrative teardown of every seed kernel at ``site``: a live one is rolled back first, then each
        goes to TERMINATED (final: the controller never germinates it again in this run)."""
        site = args.get("site")
        if isinstance(site, bool) or not isinstance(site, int) or set(args) != {"site"}:
            raise DeviceCommandError("terminate-seed takes site=N (the seed site whose kernels go)")
        manager = getattr(self.runtime, "manager", None)
        if manager is None:
            raise DeviceCommandError("no runtime yet")
        names = [n for n, k in manager.kernels.items() if k.site == site and manager.seeds[n].stage != Stage.TERMINATED]
        if not names:
            sites = sorted({k.site for k in manager.kernels.values()})
            raise DeviceCommandError(f"terminate-seed site={site}: no seed kernel there to terminate (sites: {sites})")
        for name in names:
            manager.retire(name, "operator_terminated")  # a live kernel: the site gets back what it ran before
            manager.seeds[name].move(Stage.TERMINATED, reason="operator: terminate-seed")
        return {"site": site, "terminated": names}

    def _strip(self, args: Any, envelope: Any) -> dict[str, Any]:
        from kasmina_edge.net.commands import seal_strip

        seconds = args.get("seconds", 2.0)
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 < seconds <= 4:
            raise DeviceCommandError(
                f"request-strip seconds={seconds!r}: must be in (0, 4] (the raw buffer holds 4 s)"
            )
        if self.runtime is None or self.device_key is None:
            raise DeviceCommandError("no signal yet")
        sig, _ = self.runtime.raw.view()
        fs = float(self.runtime.fs)
        samples = sig[-int(seconds * fs) :]
        sealed = seal_strip(self.device_key, self.link.device_id, envelope.command.nonce, samples, fs)
        wire = len(sealed["ciphertext"]) // 2 + 12 + 4  # ciphertext + tag, IV, request id
        self.link.send_control("strip", sealed, wire)
        return {"samples": int(samples.shape[0]), "fs": fs, "encrypted_bytes": wire}

    def _set(self, args: Any, envelope: Any) -> dict[str, Any]:
        changed: dict[str, Any] = {}
        for key, value in args.items():
            lo, hi = SETTABLE.get(key, (None, None))
            if lo is None or hi is None:
                raise DeviceCommandError(f"set {key}: not settable (settable: {', '.join(sorted(SETTABLE))})")
            if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
                raise DeviceCommandError(f"set {key}={value!r}: must be a number in [{lo:g}, {hi:g}]")
            changed[key] = float(value)
        for key, value in changed.items():
            if key == "summary_every_s":
                self.summary_every_s = value
                self.next_summary = self.now + value
            elif key == "batch_s":
                self.link.scheduler.plan = replace(self.link.scheduler.plan, batch_s=value)
        return changed

    def _security_alert(self, reason: Any, detail: str) -> None:
        if self.runtime is not None:
            self.runtime.platform.security_alert = True
        alert = AnomalyEvent(0, self._ts(self.now), AnomalyKind.OTHER, Severity.CRITICAL, 0, 0, 1.0)
        self.submit_priority(alert, Priority.CRITICAL)

    def submit_priority(self, record: Record, priority: Priority) -> int:
        fseq = self.queue.submit(record, self.now, priority)
        if self.keep_produced:
            self.produced.append((fseq, self.now, record))
        return fseq

    # ------------------------------------------------------------------ runtime events

    def on_event(self, event: RuntimeEvent) -> None:
        """Beats feed the counts and the rhythm alarms; seed moves and gate verdicts go out as wire records.
        The other events stay in the run log."""
        if isinstance(event, BeatClassified):
            self._beat(event)
        elif isinstance(event, SeedTransition):
            self.submit(SeedEvent.from_transition(event.transition, seq=0, timestamp=self._ts(self.now),
                                                  site=event.site, kernel_id=self._kernel_id(event.kernel)))
        elif isinstance(event, GateVerdict):
            self.submit(GateEvent.from_verdict(event.result, seq=0, timestamp=self._ts(self.now), site=event.site,
                                               kernel_id=self._kernel_id(event.kernel)))

    def _beat(self, beat: BeatClassified) -> None:
        t, label = beat.t, beat.label
        self.counts[label if label in self.counts else "Q"] += 1
        r = self.rhythm
        if r.last_beat_t is not None:
            r.last_rr = [*r.last_rr[-7:], t - r.last_beat_t]
        r.last_beat_t, r.asystole_reported = t, False
        if label == "V":
            if r.v_run == 0:
                r.v_run_start = t
            r.v_run += 1
            if r.v_run >= VT_MIN_BEATS and not r.v_run_reported:
                rr = r.last_rr[-(r.v_run - 1) :] or [1.0]
                bpm = 60.0 / max(1e-3, sum(rr) / len(rr))
                vt = bpm > VT_MIN_BPM
                duration_ms = int(round((t - r.v_run_start) * 1000))
                self.submit(
                    AnomalyEvent(
                        0,
                        self._ts(t),
                        AnomalyKind.VT_RUN if vt else AnomalyKind.PVC_RUN,
                        Severity.CRITICAL if vt else Severity.WARNING,
                        duration_ms,
                        duration_ms,
                        min(1.0, beat.confidence or 0.0),
                    ),
                    t,
                )
                r.v_run_reported = True
        else:
            r.v_run, r.v_run_reported = 0, False

    # ------------------------------------------------------------------ time

    def _periodic(self, now: float) -> None:
        r = self.rhythm
        if r.last_beat_t is not None and now - r.last_beat_t >= ASYSTOLE_S and not r.asystole_reported:
            gap_ms = int(round((now - r.last_beat_t) * 1000))
            self.submit(
                AnomalyEvent(0, self._ts(now), AnomalyKind.ASYSTOLE, Severity.CRITICAL, gap_ms, gap_ms, 0.9),
                now,
            )
            r.asystole_reported = True
        while now >= self.next_counts:
            period = int(round(self.next_counts - self.counts_since))
            c = self.counts
            self.submit(
                BeatCounts(0, self._ts(self.next_counts), period, c["N"], c["S"], c["V"], c["F"], c["Q"]),
                self.next_counts,
            )
            self.counts = {k: 0 for k in c}
            self.counts_since = self.next_counts
            self.next_counts += COUNTS_EVERY_S
        while now >= self.next_summary:
            self.submit(self._heartbeat(self.next_summary), self.next_summary)
            self.next_summary += self.summary_every_s
        while now >= self.next_link_stats:
            self.submit(self._link_stats(self.next_link_stats), self.next_link_stats)
            self.next_link_stats += self.link_stats_every_s

    def _heartbeat(self, t: float) -> DeviceStatus:
        st = self.status_fn() if self.status_fn is not None else {}
        return DeviceStatus(
            0,
            self._ts(t),
            int(max(0, min(100, round(float(st.get("battery_pct", 100)))))),
            int(t),
            Slot.B if st.get("slot") == "b" else Slot.A,
            int(st.get("firmware_version", 0)) % 256,
            ErrorFlags(int(st.get("error_flags", 0))),
        )

    def _link_stats(self, t: float) -> LinkStats:
        led = self.link.ledger
        return LinkStats(
            0,
            self._ts(t),
            -110,
            7.5,
            int(led.airtime_s * 1000),
            round(min(1.0, max(0.0, self.link.budget.duty_cycle_left(t))), 4),
            led.lost + led.outage,
        )

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
