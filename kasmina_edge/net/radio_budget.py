"""The radio budget: what the device's own MAC lets it send, and when.

Time on air from the Semtech formula (:mod:`kasmina_edge.core.airtime`), payload limits per data rate, the EU868
sub-band duty cycle (hard: the device never transmits past it), the US915 400 ms dwell time (hard), and the
network's fair-use budget (soft: 30 s of uplink airtime and 10 downlinks per device per rolling day; the scheduler
decides who may spend it). The medium the frames then cross is :mod:`kasmina_edge.net.link`.

Everything runs in simulated seconds passed in by the caller: nothing here sleeps or reads a clock.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

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
