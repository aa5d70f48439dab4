"""Device-side uplink: a bounded store-and-forward queue and the scheduler that spends airtime by priority.

Every record gets the device's next sequence number (an endless count; its low byte is the wire ``seq``) and waits
in :class:`RecordQueue` until the cloud acknowledges it. The queue is bounded; when it is full the drop policy
evicts the oldest record of the lowest priority present (periodic first, then events, critical last) and the
dropped numbers are reported in the next packets, so the cloud tells a deliberate drop from a loss. Periodic
records merge instead of piling up: beat counts add into the newest unsent counts, a newer heartbeat, signal
quality or link-stats record replaces the unsent one.

:class:`UplinkScheduler` builds one packet at a time: critical records first, then records the cloud reported
missing, then events, then periodic summaries, packed into what the current data rate carries. Critical records
go at the next opportunity the duty cycle and dwell time allow and may overspend the fair-use budget; everything
else is paced by a token bucket that refills at the fair-use rate (less a reserve kept for critical records).
Where the record that should go next fits no uplink at the profile's data rate (US915 DR0 carries 11 bytes, an
anomaly event is 19), that one uplink goes at the region's slowest data rate that carries it within the dwell
time (:meth:`LoRaBudget.rate_for <kasmina_edge.net.radio_budget.LoRaBudget.rate_for>`): every record class reaches the
cloud, later if the budget says so, never silently held forever.

The queue can be written to and read from bytes (:meth:`RecordQueue.to_bytes`), which is how the emulator keeps
it on its flash across power cuts. Nothing here reads a clock: ``now`` is simulated seconds.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from kasmina_edge.contracts import codec
from kasmina_edge.contracts.errors import FrameError, KasminaError
from kasmina_edge.contracts.telemetry import (
    BeatCounts,
    DeviceStatus,
    LinkStats,
    Record,
    SeedEvent,
    SignalQuality,
)
from kasmina_edge.core.profiles import IpLinkProfile, LoRaProfile
from kasmina_edge.net.packet import (
    MAX_SPREAD,
    Ack,
    DropRange,
    Packet,
    SeqRecord,
    encode_packet,
    frame_bytes,
    json_packet_bytes,
    packet_header_bytes,
    with_seq,
)
from kasmina_edge.net.priority import Priority, priority_of
from kasmina_edge.net.radio_budget import DAY_S, IpBudget, LoRaBudget

QUEUE_FORMAT = 1
MERGED_TYPES = (BeatCounts, DeviceStatus, SignalQuality, LinkStats)
FPORT_PACKET = 1  # LoRaWAN FPort of a packed packet (header + frames)
FPORT_BARE = 2  # a single codec frame without packet header (a data rate too small for the header: US915 DR0)


class QueueError(KasminaError):
    """A stored uplink queue that cannot be read back."""


@dataclass
class Entry:
    fseq: int
    priority: Priority
    record: Record
    created_at: float
    sent_count: int = 0
    last_sent_at: float = -math.inf
    resend: bool = False  # the cloud reported it missing

    @property
    def sent(self) -> bool:
        return self.sent_count > 0


@dataclass
class QueueStats:
    submitted: int = 0
    merged: int = 0
    dropped: int = 0
    dropped_by_priority: dict[str, int] = field(default_factory=dict)
    acked: int = 0
    resent: int = 0


def _merge(old: Record, new: Record) -> Record:
    """``new`` folded into the unsent ``old`` (same type); the sequence number stays ``old``'s."""
    if isinstance(old, BeatCounts) and isinstance(new, BeatCounts):
        return replace(
            new,
            seq=old.seq,
            period_s=old.period_s + new.period_s,
            n=old.n + new.n,
            s=old.s + new.s,
            v=old.v + new.v,
            f=old.f + new.f,
            q=old.q + new.q,
        )
    return replace(new, seq=old.seq)


class RecordQueue:
    """Records waiting for an acknowledgement, keyed by their endless sequence number."""

    def __init__(self, capacity: int = 256, *, next_seq: int = 0) -> None:
        if capacity < 4:
            raise QueueError(f"uplink queue capacity {capacity} must be at least 4 records")
        self.capacity = capacity
        self.next_seq = next_seq
        self.entries: OrderedDict[int, Entry] = OrderedDict()
        self.drops: list[DropRange] = []  # dropped and not yet acknowledged by the cloud
        self.stats = QueueStats()
        self.dirty = False
        # LoRaWAN: an unsent seed event is superseded by the same seed's next move (the cloud learns the path
        # DORMANT -> PROBATIONARY in one record instead of five); set by the link's plan
        self.coalesce_seed_events = False

    def __len__(self) -> int:
        return len(self.entries)

    # ------------------------------------------------------------------ in

    def submit(self, record: Record, now: float, priority: Priority | None = None) -> int:
        """Queue ``record`` (merging periodic ones); returns the sequence number that carries it."""
        prio = priority_of(record) if priority is None else priority
        self.stats.submitted += 1
        self.dirty = True
        if prio == Priority.PERIODIC and isinstance(record, MERGED_TYPES):
            for entry in reversed(self.entries.values()):
                if type(entry.record) is type(record) and not entry.sent and entry.priority == prio:
                    entry.record = _merge(entry.record, record)
                    self.stats.merged += 1
                    return entry.fseq
        if self.coalesce_seed_events and prio == Priority.EVENT and isinstance(record, SeedEvent):
            for entry in reversed(self.entries.values()):
                old = entry.record
                if (
                    isinstance(old, SeedEvent)
                    and not entry.sent
                    and entry.priority == prio
                    and (old.site, old.kernel_id, old.dst) == (record.site, record.kernel_id, record.src)
                ):
                    entry.record = replace(record, seq=old.seq, src=old.src)
                    self.stats.merged += 1
                    self.dirty = True
                    return entry.fseq
        fseq = self.next_seq
        self.next_seq += 1
        while len(self.entries) >= self.capacity:
            self._evict()
        self.entries[fseq] = Entry(fseq, prio, with_seq(record, fseq), now)
        return fseq

    def _evict(self) -> None:
        lowest = min(e.priority for e in self.entries.values())
        victim = next(e for e in self.entries.values() if e.priority == lowest)  # oldest of the lowest class
        del self.entries[victim.fseq]
        self.stats.dropped += 1
        name = victim.priority.name.lower()
        self.stats.dropped_by_priority[name] = self.stats.dropped_by_priority.get(name, 0) + 1
        self._add_drop(victim.fseq)

    def _add_drop(self, fseq: int) -> None:
        last = self.drops[-1] if self.drops else None
        if last is not None and last.start + last.count == fseq and last.count < 255:
            self.drops[-1] = DropRange(last.start, last.count + 1)
        else:
            self.drops.append(DropRange(fseq, 1))
        self.dirty = True

    def _in_drops(self, fseq: int) -> bool:
        return any(d.start <= fseq < d.start + d.count for d in self.drops)

    # ------------------------------------------------------------------ acks

    def ack(self, ack: Ack) -> int:
        """Forget what the cloud has; mark what it misses for resending. Returns how many records left."""
        missing = set(ack.missing)
        done = [f for f in self.entries if f < ack.cum or (f <= ack.high and f not in missing)]
        for f in done:
            del self.entries[f]
        for f in sorted(missing):
            entry = self.entries.get(f)
            if entry is not None and entry.sent:
                entry.resend = True
            elif entry is None and 0 <= f < self.next_seq and not self._in_drops(f):
                self._add_drop(f)  # asked for a record this device no longer has: say it is gone
        self.drops = [
            d
            for d in self.drops
            if not all(
                s < ack.cum or (s <= ack.high and s not in missing) for s in range(d.start, d.start + d.count)
            )
        ]
        self.stats.acked += len(done)
        self.dirty = self.dirty or bool(done)
        return len(done)

    # ------------------------------------------------------------------ persistence

    def to_bytes(self) -> bytes:
        body = {
            "format": QUEUE_FORMAT,
            "capacity": self.capacity,
            "next_seq": self.next_seq,
            "drops": [[d.start, d.count] for d in self.drops],
            "stats": {
                "submitted": self.stats.submitted,
                "merged": self.stats.merged,
                "dropped": self.stats.dropped,
                "dropped_by_priority": self.stats.dropped_by_priority,
                "acked": self.stats.acked,
                "resent": self.stats.resent,
            },
            "entries": [
                [e.fseq, int(e.priority), round(e.created_at, 6), e.sent_count, codec.to_dict(e.record)]
                for e in self.entries.values()
            ],
        }
        return json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> RecordQueue:
        try:
            body = json.loads(data)
            if body.get("format") != QUEUE_FORMAT:
                raise QueueError(
                    f"uplink queue format {body.get('format')!r}, this device reads {QUEUE_FORMAT}"
                )
            queue = cls(int(body["capacity"]), next_seq=int(body["next_seq"]))
            queue.drops = [DropRange(int(s), int(c)) for s, c in body["drops"]]
            stats = body.get("stats", {})
            queue.stats = QueueStats(
                **{k: stats[k] for k in ("submitted", "merged", "dropped", "acked", "resent") if k in stats},
                dropped_by_priority=dict(stats.get("dropped_by_priority", {})),
            )
            for fseq, prio, created, sent_count, rec in body["entries"]:
                # a record sent before the power cut may or may not have gone out: resend it if not acked
                queue.entries[int(fseq)] = Entry(
                    int(fseq), Priority(int(prio)), codec.from_dict(rec), float(created), int(sent_count)
                )
        except QueueError:
            raise
        except (ValueError, KeyError, TypeError, FrameError) as exc:
            raise QueueError(f"uplink queue unreadable: {exc}") from None
        return queue


# --------------------------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class TelemetryPlan:
    """When the device reports, per link: what is periodic, how fast airtime may be spent, when to resend."""

    summary_every_s: float  # beat counts, heartbeat, signal and link stats are made this often
    encoding: Literal["lora", "json"]
    batch_s: float = 0.0  # broadband: events wait at most this long to share a packet
    fair_use_reserve: float = 0.15  # of the daily fair-use airtime, kept for critical records
    resend_after_s: float = 4 * 3600.0  # an unacknowledged record goes again after this
    ack_request_after_s: float = 3600.0  # ask for an ack when none came for this long with records in flight
    bucket_frames: float = 2.0  # the pacing bucket holds this many largest-frame airtimes
    link_stats_every_s: float | None = None  # None: with every summary
    coalesce_seed_events: bool = False  # see RecordQueue.coalesce_seed_events

    @classmethod
    def for_profile(cls, profile: LoRaProfile | IpLinkProfile) -> TelemetryPlan:
        if isinstance(profile, LoRaProfile):
            # At EU868 DR0 the fair-use budget pays ~16 small uplinks a day: summaries every 30 min merge
            # into whichever uplink the budget allows next.
            # Acks cost downlinks (10 a day on a public network): ask for one every 6 h, resend after 12 h.
            return cls(
                summary_every_s=1800.0,
                encoding="lora",
                resend_after_s=12 * 3600.0,
                ack_request_after_s=6 * 3600.0,
                link_stats_every_s=6 * 3600.0,
                coalesce_seed_events=True,
            )
        latency = profile.latency.p99_s
        return cls(
            summary_every_s=60.0,
            encoding="json",
            batch_s=1.0,
            resend_after_s=max(30.0, 10 * latency),
            ack_request_after_s=60.0,
        )


# --------------------------------------------------------------------------------------------- scheduler


@dataclass(frozen=True)
class SentPacket:
    packet: Packet
    payload: bytes | dict[str, Any]
    start: float
    airtime_s: float
    size_bytes: int
    fport: int
    fcnt: int
    priority: Priority  # the highest priority inside

    @property
    def end(self) -> float:
        return self.start + self.airtime_s


@dataclass
class SchedulerStats:
    packets: int = 0
    critical_packets: int = 0
    airtime_s: float = 0.0
    bytes: int = 0
    over_fair_use_s: float = 0.0  # airtime critical packets spent past the fair-use budget
    waits_duty_cycle: int = 0
    fallback_packets: int = 0  # sent at a faster data rate because a record fit no uplink at the profile's


class UplinkScheduler:
    """Builds and books uplinks from a :class:`RecordQueue` under one radio's budget."""

    def __init__(
        self,
        queue: RecordQueue,
        budget: LoRaBudget | IpBudget,
        plan: TelemetryPlan | None = None,
    ) -> None:
        self.queue = queue
        self.budget = budget
        self.profile = budget.profile
        self.plan = plan or TelemetryPlan.for_profile(budget.profile)
        self.lora = isinstance(budget, LoRaBudget)
        self.stats = SchedulerStats()
        self.fcnt = 0
        self.last_ack_at = 0.0
        # pacing bucket, in seconds of airtime
        if self.lora:
            assert isinstance(self.profile, LoRaProfile)
            largest = budget.airtime_s(self.profile.max_payload_bytes)
            self._bucket_cap = self.plan.bucket_frames * largest
            self._rate = (
                self.profile.fair_use.uplink_airtime_s_per_day * (1 - self.plan.fair_use_reserve) / DAY_S
            )
            self._tokens = largest  # one frame's worth to start with: a day never exceeds the budget by more
        else:
            self._bucket_cap, self._rate, self._tokens = math.inf, math.inf, math.inf
        self._tokens_at = 0.0

    # ------------------------------------------------------------------ pacing

    def _refill(self, now: float) -> None:
        if self.lora and now > self._tokens_at:
            self._tokens = min(self._bucket_cap, self._tokens + (now - self._tokens_at) * self._rate)
        self._tokens_at = max(self._tokens_at, now)

    @property
    def max_payload(self) -> int:
        return self.budget.max_payload_bytes

    # ------------------------------------------------------------------ choosing

    def _candidates(self, now: float) -> list[Entry]:
        """Entries that want to go now, best first."""
        due_resend = [
            e
            for e in self.queue.entries.values()
            if e.sent and (e.resend or now - e.last_sent_at >= self._resend_delay(e))
        ]
        unsent = [e for e in self.queue.entries.values() if not e.sent]
        ranked = sorted(unsent, key=lambda e: (-int(e.priority), e.fseq))
        critical = [e for e in ranked if e.priority == Priority.CRITICAL]
        others = [e for e in ranked if e.priority != Priority.CRITICAL]
        return critical + sorted(due_resend, key=lambda e: (-int(e.priority), e.fseq)) + others

    def _resend_delay(self, e: Entry) -> float:
        """Unacknowledged records go again after ``resend_after_s``, doubling per try (at most x16)."""
        return self.plan.resend_after_s * 2 ** min(4, max(0, e.sent_count - 1))

    def _wants_to_send(self, candidates: list[Entry], now: float) -> bool:
        if not candidates and not self.queue.drops:
            return False
        if candidates and candidates[0].priority == Priority.CRITICAL and not candidates[0].sent:
            return True
        if self.lora:
            return True  # the pacing bucket decides
        # broadband: events wait up to batch_s to share a packet; periodic records go when made
        oldest = min((e.created_at for e in candidates), default=now)
        return now - oldest >= self.plan.batch_s or any(e.priority == Priority.PERIODIC for e in candidates)

    def _pack(self, candidates: list[Entry], limit: int) -> tuple[list[Entry], list[DropRange], int]:
        """Entries that fit ``limit`` bytes (binary) together with the drop report; returns their size."""
        drops = self.queue.drops[:8]
        header = packet_header_bytes(len(drops))
        if header > limit:
            drops, header = [], packet_header_bytes(0)
        chosen: list[Entry] = []
        used = header
        for e in candidates:
            size = frame_bytes(e.record)
            if used + size > limit:
                continue
            if chosen and abs(e.fseq - chosen[0].fseq) > MAX_SPREAD:
                continue
            chosen.append(e)
            used += size
        return chosen, drops, used

    def _pack_json(self, candidates: list[Entry], limit: int) -> tuple[list[Entry], list[DropRange], int]:
        drops = self.queue.drops[:64]
        chosen: list[Entry] = []
        for e in candidates:
            trial = Packet(tuple(SeqRecord(c.fseq, c.record) for c in [*chosen, e]), tuple(drops))
            if json_packet_bytes(trial) > limit:
                break
            chosen.append(e)
        size = json_packet_bytes(Packet(tuple(SeqRecord(c.fseq, c.record) for c in chosen), tuple(drops)))
        return chosen, drops, size

    def _ack_request(self, now: float) -> bool:
        in_flight = sum(1 for e in self.queue.entries.values() if e.sent)
        return in_flight > 0 and (
            now - self.last_ack_at >= self.plan.ack_request_after_s or in_flight >= self.queue.capacity // 2
        )

    def poll(self, now: float) -> SentPacket | None:
        """Send one packet now if something should go and the radio may; the packet is booked on the budget."""
        self._refill(now)
        candidates = self._candidates(now)
        if not self._wants_to_send(candidates, now):
            return None
        critical = bool(candidates) and candidates[0].priority == Priority.CRITICAL and not candidates[0].sent
        limit = self.max_payload
        bare = False
        rate = self._rate_for_top(candidates)
        if rate is not None:  # the top record does not fit this data rate: this uplink goes at a faster one
            limit = rate.max_payload_bytes
        if self.plan.encoding == "lora":
            chosen, drops, size = self._pack(candidates, limit)
            if not chosen and not drops:
                # the data rate cannot carry the packet header: one bare frame that fits, if any
                fits = [e for e in candidates if frame_bytes(e.record) <= limit]
                if not fits:
                    return None
                chosen, drops, size, bare = [fits[0]], [], frame_bytes(fits[0].record), True
        else:
            chosen, drops, size = self._pack_json(candidates, limit)
        if not chosen and not drops:
            return None
        try:
            start = self.budget.earliest_tx(now, size, rate)
        except KasminaError:
            return None
        if start > now + 1e-9:
            self.stats.waits_duty_cycle += 1
            return None
        airtime = self.budget.airtime_s(size, rate)
        top = max((e.priority for e in chosen), default=Priority.PERIODIC)
        if (
            self.lora
            and not critical
            and (self._tokens < airtime or self.budget.fair_use_left_s(now) < airtime)
        ):
            return None
        packet = Packet(
            tuple(SeqRecord(e.fseq, e.record) for e in chosen),
            tuple(drops),
            ack_request=self._ack_request(now) and not bare,
        )
        if bare:
            payload: bytes | dict[str, Any] = codec.encode(chosen[0].record)
        elif self.plan.encoding == "lora":
            payload = encode_packet(packet)
        else:
            from kasmina_edge.net.packet import packet_to_json

            payload = packet_to_json(packet)
        if self.lora:
            left = self.budget.fair_use_left_s(now)
            if critical and left < airtime:
                self.stats.over_fair_use_s += airtime - max(0.0, left)
            self._tokens -= airtime
        tx = self.budget.commit(now, size, rate)
        if rate is not None:
            self.stats.fallback_packets += 1
        for e in chosen:
            if e.sent:
                self.queue.stats.resent += 1
            e.sent_count += 1
            e.last_sent_at = tx.start
            e.resend = False
        self.queue.dirty = True
        self.fcnt += 1
        self.stats.packets += 1
        self.stats.critical_packets += int(top == Priority.CRITICAL)
        self.stats.airtime_s += tx.airtime_s
        self.stats.bytes += size
        return SentPacket(
            packet,
            payload,
            tx.start,
            tx.airtime_s,
            size,
            FPORT_BARE if bare else FPORT_PACKET,
            self.fcnt,
            top,
        )

    def _rate_for_top(self, candidates: list[Entry]) -> LoRaProfile | None:
        """A faster data rate of the region when the record that should go next fits no uplink at this one
        (in a packet or bare): US915 DR0 carries 11 bytes, an anomaly event is 19. None: this data rate."""
        if not self.lora or not candidates or self.plan.encoding != "lora":
            return None
        frame = frame_bytes(candidates[0].record)
        if frame <= self.max_payload:
            return None
        assert isinstance(self.budget, LoRaBudget)
        rate = self.budget.rate_for(frame + packet_header_bytes(min(len(self.queue.drops), 8)))
        rate = rate or self.budget.rate_for(frame + packet_header_bytes())
        return rate if rate is not None and rate.name != self.profile.name else None

    def on_ack(self, ack: Ack, now: float) -> int:
        self.last_ack_at = now
        return self.queue.ack(ack)

    def next_wakeup(self, now: float) -> float:
        """The earliest time :meth:`poll` could send something (for event-driven simulation loops)."""
        candidates = self._candidates(now)
        times: list[float] = []
        if candidates or self.queue.drops:
            rate = self._rate_for_top(candidates)
            if rate is not None:  # the next uplink goes at a faster rate: its own size and airtime
                size = frame_bytes(candidates[0].record) + packet_header_bytes()
            else:
                size = min((frame_bytes(e.record) for e in candidates), default=0) + packet_header_bytes()
                size = min(size, self.max_payload)
            try:
                radio = self.budget.earliest_tx(now, size, rate)
            except KasminaError:
                radio = math.inf
            if self.lora and not (candidates and candidates[0].priority == Priority.CRITICAL):
                need = self.budget.airtime_s(size, rate) - self._tokens
                if need > 0:
                    radio = max(radio, now + need / self._rate)
            elif not self.lora:
                oldest = min((e.created_at for e in candidates), default=now)
                radio = max(radio, oldest + self.plan.batch_s)
            times.append(radio)
        sent = [e.last_sent_at + self._resend_delay(e) for e in self.queue.entries.values() if e.sent]
        times += sent
        return max(now, min(times, default=math.inf))
