"""Link simulator: what a radio may send (airtime, duty cycle, dwell time, fair use) and what the medium does to it.

Two halves, kept apart because they live on different sides of the air:

* the **radio budget** (:class:`LoRaBudget`, :class:`IpBudget`) is the device's own MAC bookkeeping: time on
  air from the Semtech formula (:mod:`kasmina_edge.core.airtime`), payload limits per data rate, the
  EU868 sub-band duty cycle (hard: the device never transmits past it), the US915 400 ms dwell time (hard),
  and the network's fair-use budget (soft: 30 s of uplink airtime and 10 downlinks per device per rolling day;
  the scheduler decides who may spend it);
* the **channel** (:class:`Channel`) is the simulated medium between device and broker: loss (Bernoulli or
  Gilbert–Elliott bursts), latency from the profile, and scripted or stochastic faults (:class:`FaultInjector`:
  outages, latency spikes, gateway restarts), plus the LoRaWAN Class A rule that a downlink reaches the device
  only in a receive window after one of its uplinks (:class:`ClassADownlinks`).

Everything runs in simulated seconds passed in by the caller: nothing here sleeps or reads a clock, so a day of
a thousand devices simulates in seconds. Random draws use :class:`random.Random` (scalar draws are ~20x cheaper
than numpy's per call, and the simulator draws one number at a time).
"""

from __future__ import annotations

import bisect
import math
import random
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol, TypeAlias

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.core.airtime import LinkError, time_on_air_s
from kasmina_edge.core.profiles import IpLinkProfile, LoRaProfile, NetworkProfile

HOUR_S = 3600.0
DAY_S = 86400.0
DUTY_CYCLE_WINDOW_S = HOUR_S  # ETSI EN 300 220: duty cycle is measured over one hour
RECEIVE_DELAY1_S = 1.0  # LoRaWAN L2 1.0.4: RX1 opens 1 s after the end of the uplink
RECEIVE_DELAY2_S = 2.0  # LoRaWAN L2 1.0.4: RX2 opens 2 s after the end of the uplink
# A Class A radio listens in RX1 and RX2 before it may send again; RX2 stays open at most one preamble
# detection (8 symbols at SF12/125 kHz = 0.26 s): 0.3 s covers every region's RX2 data rate.
RX2_WINDOW_S = 0.3
# Gateway -> network server -> broker: an estimate (packet forwarder, backhaul, MQTT bridge), lognormal.
LORA_BACKHAUL_MEDIAN_S = 0.2
LORA_BACKHAUL_P99_S = 1.0
_Z99 = 2.3263478740408408  # NormalDist().inv_cdf(0.99), written out to keep this import light


# --------------------------------------------------------------------------------------------- radio budget


@dataclass(frozen=True)
class Transmission:
    """One uplink the radio made: when it started, how long it was on air, how many payload bytes."""

    start: float
    airtime_s: float
    payload_bytes: int

    @property
    def end(self) -> float:
        return self.start + self.airtime_s


class DutyCycleLedger:
    """One sub-band's duty cycle, enforced two ways.

    After each transmission the band is off for ``airtime x (1/dc - 1)`` (what LoRaMac-node does), and a
    transmission must also keep the airtime of every one-hour window ending at its own end within ``dc x 1 h``
    (the regulation's wording). The second check makes the guarantee exact at window edges, where the time-off
    rule alone can overshoot by one frame.
    """

    def __init__(self, duty_cycle: float, window_s: float = DUTY_CYCLE_WINDOW_S) -> None:
        if not 0 < duty_cycle <= 1:
            raise LinkError(f"duty cycle {duty_cycle} must be in (0, 1]")
        self.duty_cycle = duty_cycle
        self.window_s = window_s
        self.off_until = -math.inf
        self._window: deque[Transmission] = deque()
        self._window_airtime = 0.0

    @property
    def window_budget_s(self) -> float:
        return self.duty_cycle * self.window_s

    def _expire(self, horizon: float) -> None:
        while self._window and self._window[0].end <= horizon:
            self._window_airtime -= self._window.popleft().airtime_s
        if not self._window:
            self._window_airtime = 0.0  # no drift from float sums

    def earliest(self, now: float, airtime_s: float) -> float:
        """The first time at or after ``now`` that a transmission of ``airtime_s`` may start."""
        if airtime_s > self.window_budget_s:
            return math.inf
        start = max(now, self.off_until)
        self._expire(start + airtime_s - self.window_s)
        used = self._window_airtime
        for tx in self._window:  # oldest first: wait until enough of them leave the window
            if used + airtime_s <= self.window_budget_s + 1e-12:
                break
            used -= tx.airtime_s
            start = max(start, tx.end + self.window_s - airtime_s)
        return start

    def record(self, tx: Transmission) -> None:
        self.off_until = max(self.off_until, tx.end + tx.airtime_s * (1.0 / self.duty_cycle - 1.0))
        self._window.append(tx)
        self._window_airtime += tx.airtime_s

    def used_s(self, now: float) -> float:
        """Airtime of the transmissions that end within the hour before ``now``."""
        return sum(tx.airtime_s for tx in self._window if now - self.window_s < tx.end <= now)

    def left_fraction(self, now: float) -> float:
        return max(0.0, 1.0 - self.used_s(now) / self.window_budget_s)


class FairUseLedger:
    """A network's fair-use policy over a rolling 24 h: uplink airtime and downlink count per device."""

    def __init__(self, airtime_s_per_day: float, downlinks_per_day: int, window_s: float = DAY_S) -> None:
        self.airtime_s_per_day = airtime_s_per_day
        self.downlinks_per_day = downlinks_per_day
        self.window_s = window_s
        self._uplinks: deque[Transmission] = deque()
        self._uplink_airtime = 0.0
        self._downlinks: deque[float] = deque()

    def _expire(self, now: float) -> None:
        while self._uplinks and self._uplinks[0].start <= now - self.window_s:
            self._uplink_airtime -= self._uplinks.popleft().airtime_s
        if not self._uplinks:
            self._uplink_airtime = 0.0
        while self._downlinks and self._downlinks[0] <= now - self.window_s:
            self._downlinks.popleft()

    def airtime_used_s(self, now: float) -> float:
        self._expire(now)
        return self._uplink_airtime

    def airtime_left_s(self, now: float) -> float:
        """Seconds of uplink airtime left in the rolling day (negative once overspent)."""
        return self.airtime_s_per_day - self.airtime_used_s(now)

    def downlinks_left(self, now: float) -> int:
        self._expire(now)
        return self.downlinks_per_day - len(self._downlinks)

    def record_uplink(self, tx: Transmission) -> None:
        self._expire(tx.start)
        self._uplinks.append(tx)
        self._uplink_airtime += tx.airtime_s

    def record_downlink(self, at: float) -> None:
        self._expire(at)
        self._downlinks.append(at)


def fallback_rates(profile: LoRaProfile) -> list[LoRaProfile]:
    """The region's other data rates that carry more than ``profile`` (same file, ``NAME-drN``), slowest first:
    where a frame does not fit the profile's data rate, the device sends that one uplink faster (LoRaWAN lets a
    device pick its uplink data rate when ADR does not; it trades range for the frame) rather than never."""
    from kasmina_edge.core import catalog

    stem, sep, _ = profile.name.rpartition("-dr")
    if not sep:
        return []
    out: list[LoRaProfile] = []
    for name in catalog.network_names():
        if name.startswith(f"{stem}-dr") and name != profile.name:
            try:
                other = catalog.network(name)
            except KasminaError:
                continue
            if isinstance(other, LoRaProfile) and other.max_payload_bytes > profile.max_payload_bytes:
                out.append(other)
    # the slowest rate (most range) first: the highest spreading factor, then the narrowest band
    return sorted(out, key=lambda r: (-r.data_rate.spreading_factor, r.data_rate.bandwidth_hz))


class LoRaBudget:
    """A LoRaWAN device's MAC rules: payload limit, dwell time, sub-band duty cycle, optional fair use.

    ``keep_log`` keeps every transmission (for the airtime ledger and the tests that check the rules held).
    """

    def __init__(self, profile: LoRaProfile, *, fair_use: bool = True, keep_log: bool = False) -> None:
        self.profile = profile
        self.duty = DutyCycleLedger(profile.duty_cycle) if profile.duty_cycle is not None else None
        self.fair_use = (
            FairUseLedger(profile.fair_use.uplink_airtime_s_per_day, profile.fair_use.downlinks_per_day)
            if fair_use
            else None
        )
        self.log: list[Transmission] | None = [] if keep_log else None
        self.airtime_total_s = 0.0
        self.uplinks = 0
        # end of the last uplink's receive windows (Class A: one thing at a time)
        self.radio_free_at = -math.inf
        self._airtime_cache: dict[tuple[str, int], float] = {}
        self.fallbacks = fallback_rates(profile)
        self.fallback_uplinks = 0  # uplinks sent at a faster data rate than the profile's (a frame needed it)

    @property
    def max_payload_bytes(self) -> int:
        return self.profile.max_payload_bytes

    def rate_for(self, payload_bytes: int) -> LoRaProfile | None:
        """The data rate an uplink of ``payload_bytes`` goes at: the profile's own when the frame fits it, else the
        slowest (longest-range) faster rate of the same region that carries it within the dwell time; None: none."""
        for rate in (self.profile, *self.fallbacks):
            if payload_bytes <= rate.max_payload_bytes:
                dwell = rate.dwell_time_s
                if dwell is None or time_on_air_s(rate, payload_bytes) <= dwell:
                    return rate
        return None

    def airtime_s(self, payload_bytes: int, rate: LoRaProfile | None = None) -> float:
        rate = rate or self.profile
        cached = self._airtime_cache.get((rate.name, payload_bytes))
        if cached is None:
            cached = self._airtime_cache[(rate.name, payload_bytes)] = time_on_air_s(rate, payload_bytes)
        return cached

    def check(self, payload_bytes: int, rate: LoRaProfile | None = None) -> float:
        """The frame's airtime; :class:`LinkError` if the data rate or the dwell time cannot carry it."""
        rate = rate or self.profile
        airtime = self.airtime_s(payload_bytes, rate)
        dwell = rate.dwell_time_s
        if dwell is not None and airtime > dwell:
            raise LinkError(
                f"{payload_bytes} B on {rate.name} is on air {airtime * 1e3:.0f} ms, "
                f"over the {dwell * 1e3:.0f} ms dwell time"
            )
        return airtime

    def earliest_tx(self, now: float, payload_bytes: int, rate: LoRaProfile | None = None) -> float:
        airtime = self.check(payload_bytes, rate)
        start = max(now, self.radio_free_at)
        return self.duty.earliest(start, airtime) if self.duty is not None else start

    def fair_use_left_s(self, now: float) -> float:
        return self.fair_use.airtime_left_s(now) if self.fair_use is not None else math.inf

    def commit(self, start: float, payload_bytes: int, rate: LoRaProfile | None = None) -> Transmission:
        """Book a transmission; refuses one the duty cycle or dwell time forbids (a scheduler bug, not a user's)."""
        airtime = self.check(payload_bytes, rate)
        if rate is not None and rate.name != self.profile.name:
            self.fallback_uplinks += 1
        if start < self.radio_free_at - 1e-9:
            raise LinkError(
                f"{self.profile.name}: an uplink at t={start:.3f} s overlaps the previous uplink or its "
                f"receive windows (radio free at t={self.radio_free_at:.3f} s)"
            )
        if self.duty is not None and self.duty.earliest(start, airtime) > start + 1e-9:
            raise LinkError(
                f"{self.profile.name}: a {airtime:.3f} s uplink at t={start:.3f} s breaks the "
                f"{self.duty.duty_cycle:.1%} duty cycle (free at t={self.duty.earliest(start, airtime):.3f} s)"
            )
        tx = Transmission(start, airtime, payload_bytes)
        self.radio_free_at = tx.end + RECEIVE_DELAY2_S + RX2_WINDOW_S
        if self.duty is not None:
            self.duty.record(tx)
        if self.fair_use is not None:
            self.fair_use.record_uplink(tx)
        if self.log is not None:
            self.log.append(tx)
        self.airtime_total_s += airtime
        self.uplinks += 1
        return tx

    def duty_cycle_left(self, now: float) -> float:
        return self.duty.left_fraction(now) if self.duty is not None else 1.0


class IpBudget:
    """A cellular or Wi-Fi radio: no regulatory airtime limit; frames go out back to back at the uplink rate."""

    def __init__(self, profile: IpLinkProfile, *, keep_log: bool = False) -> None:
        self.profile = profile
        self.busy_until = -math.inf
        self.log: list[Transmission] | None = [] if keep_log else None
        self.airtime_total_s = 0.0
        self.uplinks = 0

    @property
    def max_payload_bytes(self) -> int:
        return self.profile.max_payload_bytes

    def airtime_s(self, payload_bytes: int, rate: object = None) -> float:
        return time_on_air_s(self.profile, payload_bytes)

    def earliest_tx(self, now: float, payload_bytes: int, rate: object = None) -> float:
        self.airtime_s(payload_bytes)  # size check
        return max(now, self.busy_until)

    def fair_use_left_s(self, now: float) -> float:
        return math.inf

    def commit(self, start: float, payload_bytes: int, rate: object = None) -> Transmission:
        tx = Transmission(max(start, self.busy_until), self.airtime_s(payload_bytes), payload_bytes)
        self.busy_until = tx.end
        if self.log is not None:
            self.log.append(tx)
        self.airtime_total_s += tx.airtime_s
        self.uplinks += 1
        return tx

    def duty_cycle_left(self, now: float) -> float:
        return 1.0


def radio_budget(
    profile: NetworkProfile, *, fair_use: bool = True, keep_log: bool = False
) -> LoRaBudget | IpBudget:
    if isinstance(profile, LoRaProfile):
        return LoRaBudget(profile, fair_use=fair_use, keep_log=keep_log)
    return IpBudget(profile, keep_log=keep_log)


# --------------------------------------------------------------------------------------------- loss models


class LossModel(Protocol):
    def lost(self, rng: random.Random) -> bool: ...

    @property
    def mean_loss(self) -> float: ...


@dataclass
class Bernoulli:
    """Each frame lost independently with probability ``p``."""

    p: float

    def __post_init__(self) -> None:
        if not 0 <= self.p <= 1:
            raise LinkError(f"Bernoulli loss p={self.p} must be in [0, 1]")

    def lost(self, rng: random.Random) -> bool:
        return rng.random() < self.p

    @property
    def mean_loss(self) -> float:
        return self.p


@dataclass
class GilbertElliott:
    """Two-state burst loss: a good and a bad state with their own loss, switching per frame.

    ``p_gb`` is the chance to go bad after a frame, ``p_bg`` to recover; bursts last ``1/p_bg`` frames on average.
    """

    p_gb: float
    p_bg: float
    loss_good: float = 0.0
    loss_bad: float = 1.0
    bad: bool = False

    def __post_init__(self) -> None:
        for name in ("p_gb", "p_bg", "loss_good", "loss_bad"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise LinkError(f"Gilbert-Elliott {name}={value} must be in [0, 1]")
        if self.p_gb + self.p_bg == 0:
            raise LinkError("Gilbert-Elliott p_gb and p_bg cannot both be 0")

    @classmethod
    def bursty(cls, mean_loss: float, mean_burst_frames: float) -> GilbertElliott:
        """A chain losing ``mean_loss`` of frames in bursts of ``mean_burst_frames`` on average."""
        if not 0 < mean_loss < 1 or mean_burst_frames < 1:
            raise LinkError(
                f"burst loss {mean_loss} must be in (0, 1) and burst length {mean_burst_frames} >= 1 frame"
            )
        p_bg = 1.0 / mean_burst_frames
        return cls(p_gb=mean_loss * p_bg / (1.0 - mean_loss), p_bg=p_bg)

    def lost(self, rng: random.Random) -> bool:
        self.bad = rng.random() < (1.0 - self.p_bg if self.bad else self.p_gb)
        return rng.random() < (self.loss_bad if self.bad else self.loss_good)

    @property
    def mean_loss(self) -> float:
        pi_bad = self.p_gb / (self.p_gb + self.p_bg)
        return pi_bad * self.loss_bad + (1.0 - pi_bad) * self.loss_good


# --------------------------------------------------------------------------------------------- faults


@dataclass(frozen=True)
class Outage:
    """The link carries nothing, either way, from ``start_s`` for ``duration_s``."""

    start_s: float
    duration_s: float


@dataclass(frozen=True)
class LatencySpike:
    """Every frame from ``start_s`` for ``duration_s`` arrives ``extra_s`` later than usual."""

    start_s: float
    duration_s: float
    extra_s: float


@dataclass(frozen=True)
class GatewayRestart:
    """The gateway (or broker) restarts at ``at_s``: down for ``downtime_s``, queued downlinks lost."""

    at_s: float
    downtime_s: float = 30.0


@dataclass(frozen=True)
class LossBurst:
    """Frames from ``start_s`` for ``duration_s`` are lost with probability ``loss`` (on top of the base model)."""

    start_s: float
    duration_s: float
    loss: float


FaultEvent: TypeAlias = Outage | LatencySpike | GatewayRestart | LossBurst


def _intervals(pairs: list[tuple[float, float]]) -> tuple[list[float], list[float]]:
    """Merge [start, end) intervals; returns sorted starts and their ends for bisect lookups."""
    merged: list[list[float]] = []
    for start, end in sorted(pairs):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [m[0] for m in merged], [m[1] for m in merged]


def _inside(starts: list[float], ends: list[float], t: float) -> int:
    """Index of the interval holding ``t``, or -1."""
    i = bisect.bisect_right(starts, t) - 1
    return i if i >= 0 and t < ends[i] else -1


class FaultInjector:
    """Scripted fault events plus a stochastic loss model; queried by time, so tests can place faults exactly.

    Build it from events (``FaultInjector([Outage(600, 600)], loss=Bernoulli(0.05))``), from a spec string
    (:meth:`parse`, for the CLI), or draw events from rates (:meth:`stochastic`).
    """

    def __init__(
        self, events: tuple[FaultEvent, ...] | list[FaultEvent] = (), loss: LossModel | None = None
    ) -> None:
        self.events: list[FaultEvent] = list(events)
        self.loss = loss
        self._index()

    def add(self, event: FaultEvent) -> None:
        self.events.append(event)
        self._index()

    def _index(self) -> None:
        down = [(e.start_s, e.start_s + e.duration_s) for e in self.events if isinstance(e, Outage)]
        down += [(e.at_s, e.at_s + e.downtime_s) for e in self.events if isinstance(e, GatewayRestart)]
        self._down = _intervals(down)
        self._spikes = sorted(
            (e for e in self.events if isinstance(e, LatencySpike)), key=lambda e: e.start_s
        )
        self._bursts = sorted((e for e in self.events if isinstance(e, LossBurst)), key=lambda e: e.start_s)
        self._restarts = sorted(e.at_s for e in self.events if isinstance(e, GatewayRestart))

    def down(self, t: float) -> bool:
        return _inside(*self._down, t) >= 0

    def up_again(self, t: float) -> float:
        """When the link is next up at or after ``t``."""
        i = _inside(*self._down, t)
        return t if i < 0 else self._down[1][i]

    def extra_latency_s(self, t: float) -> float:
        return sum(s.extra_s for s in self._spikes if s.start_s <= t < s.start_s + s.duration_s)

    def burst_loss(self, t: float) -> float:
        """Extra loss probability at ``t`` from scripted loss bursts."""
        keep = 1.0
        for b in self._bursts:
            if b.start_s <= t < b.start_s + b.duration_s:
                keep *= 1.0 - b.loss
        return 1.0 - keep

    def restarts_between(self, t0: float, t1: float) -> int:
        """Gateway restarts in (t0, t1]."""
        return bisect.bisect_right(self._restarts, t1) - bisect.bisect_right(self._restarts, t0)

    def lost(self, t: float, rng: random.Random) -> bool:
        if self.loss is not None and self.loss.lost(rng):
            return True
        extra = self.burst_loss(t) if self._bursts else 0.0
        return extra > 0 and rng.random() < extra

    @classmethod
    def stochastic(
        cls,
        rng: random.Random,
        horizon_s: float,
        *,
        outages_per_day: float = 0.0,
        outage_mean_s: float = 600.0,
        spikes_per_day: float = 0.0,
        spike_mean_s: float = 120.0,
        spike_extra_s: float = 2.0,
        restarts_per_day: float = 0.0,
        restart_downtime_s: float = 30.0,
        loss: LossModel | None = None,
    ) -> FaultInjector:
        """Fault events drawn as Poisson arrivals over ``[0, horizon_s)`` with exponential durations."""
        events: list[FaultEvent] = []

        def arrivals(per_day: float) -> list[float]:
            times, t = [], 0.0
            while per_day > 0:
                t += rng.expovariate(per_day / DAY_S)
                if t >= horizon_s:
                    break
                times.append(t)
            return times

        events += [Outage(t, rng.expovariate(1.0 / outage_mean_s)) for t in arrivals(outages_per_day)]
        events += [
            LatencySpike(t, rng.expovariate(1.0 / spike_mean_s), spike_extra_s)
            for t in arrivals(spikes_per_day)
        ]
        events += [GatewayRestart(t, restart_downtime_s) for t in arrivals(restarts_per_day)]
        return cls(events, loss=loss)

    @classmethod
    def parse(cls, spec: str) -> FaultInjector:
        """Faults from a comma-separated spec (times in seconds of simulated time)::

        outage@600+600        outage from t=600 s for 600 s
        spike@60+30:2.5       latency +2.5 s from t=60 s for 30 s
        restart@1800+20       gateway/broker restart at t=1800 s, down 20 s
        burst@100+300:0.2     20 % extra loss from t=100 s for 300 s
        loss:0.05             Bernoulli loss 5 %
        ge:0.2:4              Gilbert-Elliott: 20 % loss in bursts of 4 frames on average
        """
        events: list[FaultEvent] = []
        loss: LossModel | None = None
        number = r"(\d+(?:\.\d+)?)"
        patterns = {
            "outage": re.compile(rf"outage@{number}\+{number}"),
            "spike": re.compile(rf"spike@{number}\+{number}:{number}"),
            "restart": re.compile(rf"restart@{number}(?:\+{number})?"),
            "burst": re.compile(rf"burst@{number}\+{number}:{number}"),
            "loss": re.compile(rf"loss:{number}"),
            "ge": re.compile(rf"ge:{number}:{number}"),
        }
        for part in (p.strip() for p in spec.split(",") if p.strip()):
            kind = re.split(r"[@:]", part, maxsplit=1)[0]
            pattern = patterns.get(kind)
            match = pattern.fullmatch(part) if pattern else None
            if match is None:
                raise LinkError(
                    f"fault spec {part!r}: expected outage@T+D, spike@T+D:EXTRA, restart@T[+D], "
                    "burst@T+D:LOSS, loss:P or ge:LOSS:BURST"
                )
            v = [float(g) if g is not None else None for g in match.groups()]
            if kind == "outage":
                events.append(Outage(v[0], v[1]))  # type: ignore[arg-type]
            elif kind == "spike":
                events.append(LatencySpike(v[0], v[1], v[2]))  # type: ignore[arg-type]
            elif kind == "restart":
                events.append(GatewayRestart(v[0], v[1] if v[1] is not None else 30.0))  # type: ignore[arg-type]
            elif kind == "burst":
                if not 0 <= v[2] <= 1:  # type: ignore[operator]
                    raise LinkError(f"fault spec {part!r}: loss must be in [0, 1]")
                events.append(LossBurst(v[0], v[1], v[2]))  # type: ignore[arg-type]
            elif kind == "loss":
                loss = Bernoulli(v[0])  # type: ignore[arg-type]
            else:
                loss = GilbertElliott.bursty(v[0], v[1])  # type: ignore[arg-type]
        return cls(events, loss=loss)


# --------------------------------------------------------------------------------------------- channel


@dataclass(frozen=True)
class Delivery:
    """What became of one frame: delivered (and when it reached the far side) or why not."""

    sent_at: float
    airtime_s: float
    delivered: bool
    arrival_at: float  # math.inf when not delivered
    reason: str  # "ok", "lost", "outage"


@dataclass
class ChannelStats:
    uplinks: int = 0
    uplinks_lost: int = 0
    uplinks_outage: int = 0
    downlinks: int = 0
    downlinks_lost: int = 0


class Channel:
    """The medium: loss, latency (the profile's lognormal; LoRa: airtime plus backhaul) and faults."""

    def __init__(
        self, profile: NetworkProfile, *, faults: FaultInjector | None = None, seed: int | None = 0
    ) -> None:
        self.profile = profile
        self.faults = faults or FaultInjector()
        self.rng = random.Random(seed)
        self.stats = ChannelStats()
        if isinstance(profile, LoRaProfile):
            self._base_loss = 0.0
            self._mu = math.log(LORA_BACKHAUL_MEDIAN_S)
            self._sigma = math.log(LORA_BACKHAUL_P99_S / LORA_BACKHAUL_MEDIAN_S) / _Z99
        else:
            self._base_loss = profile.loss_rate
            self._mu = math.log(profile.latency.median_s)
            self._sigma = profile.latency.sigma

    def latency_s(self, t: float) -> float:
        """One draw of the one-way latency past the end of transmission, faults included."""
        return self.rng.lognormvariate(self._mu, self._sigma) + self.faults.extra_latency_s(t)

    def _carry(self, start: float, airtime_s: float) -> Delivery:
        end = start + airtime_s
        if self.faults.down(start) or self.faults.down(end):
            return Delivery(start, airtime_s, False, math.inf, "outage")
        if (self._base_loss and self.rng.random() < self._base_loss) or self.faults.lost(start, self.rng):
            return Delivery(start, airtime_s, False, math.inf, "lost")
        return Delivery(start, airtime_s, True, end + self.latency_s(start), "ok")

    def uplink(self, tx: Transmission) -> Delivery:
        delivery = self._carry(tx.start, tx.airtime_s)
        self.stats.uplinks += 1
        self.stats.uplinks_lost += delivery.reason == "lost"
        self.stats.uplinks_outage += delivery.reason == "outage"
        return delivery

    def downlink(self, start: float, payload_bytes: int) -> Delivery:
        """A frame from the network to the device (LoRa: inside a receive window, so no backhaul wait)."""
        if isinstance(self.profile, LoRaProfile):
            airtime = time_on_air_s(self.profile, min(payload_bytes, self.profile.max_payload_bytes))
        else:
            airtime = payload_bytes * 8.0 / self.profile.downlink_bps
        delivery = self._carry(start, airtime)
        if delivery.delivered and isinstance(self.profile, LoRaProfile):
            delivery = Delivery(start, airtime, True, start + airtime, "ok")
        self.stats.downlinks += 1
        self.stats.downlinks_lost += not delivery.delivered
        return delivery


# --------------------------------------------------------------------------------------------- Class A downlinks


@dataclass
class DownlinkResult:
    payload: bytes
    delivery: Delivery


@dataclass
class ClassADownlinks:
    """The network server's downlink queue for one Class A device.

    A downlink waits until an uplink from the device reaches the network; it then goes out in RX1 (1 s after the
    uplink ends) if the gateway is up, the device has fair-use downlinks left, and the gateway's downlink sub-band
    duty cycle allows it. One downlink per uplink; a gateway restart empties the queue (it lived in the gateway).
    """

    channel: Channel
    fair_use: FairUseLedger | None = None
    queue: deque[bytes] = field(default_factory=deque)
    duty: DutyCycleLedger | None = None
    last_uplink_at: float = -math.inf
    dropped_by_restart: int = 0
    refused_fair_use: int = 0
    refused_duty_cycle: int = 0

    def __post_init__(self) -> None:
        profile = self.channel.profile
        if self.duty is None and isinstance(profile, LoRaProfile) and profile.downlink_duty_cycle is not None:
            self.duty = DutyCycleLedger(profile.downlink_duty_cycle)

    def enqueue(self, payload: bytes) -> None:
        self.queue.append(payload)

    def on_uplink(self, uplink: Delivery) -> DownlinkResult | None:
        """Called for every uplink the device sent; returns the downlink sent in its receive window, if any."""
        if self.channel.faults.restarts_between(self.last_uplink_at, uplink.sent_at) and self.queue:
            self.dropped_by_restart += len(self.queue)
            self.queue.clear()
        self.last_uplink_at = uplink.sent_at
        if not uplink.delivered or not self.queue:
            return None
        rx1 = uplink.sent_at + uplink.airtime_s + RECEIVE_DELAY1_S
        if self.fair_use is not None and self.fair_use.downlinks_left(rx1) <= 0:
            self.refused_fair_use += 1
            return None
        payload = self.queue[0]
        profile = self.channel.profile
        if self.duty is not None and isinstance(profile, LoRaProfile):
            airtime = time_on_air_s(profile, min(len(payload), profile.max_payload_bytes))
            if self.duty.earliest(rx1, airtime) > rx1:
                self.refused_duty_cycle += 1
                return None
            self.duty.record(Transmission(rx1, airtime, len(payload)))
        self.queue.popleft()
        if self.fair_use is not None:
            self.fair_use.record_downlink(rx1)
        return DownlinkResult(payload, self.channel.downlink(rx1, len(payload)))
