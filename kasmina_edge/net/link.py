"""The simulated medium between device and broker, and the LoRaWAN Class A downlink rule.

The **channel** (:class:`Channel`) applies loss (its profile's rate plus a :mod:`kasmina_edge.net.faults` model),
latency from the profile (LoRa: airtime plus a backhaul estimate) and scripted or stochastic faults
(:class:`~kasmina_edge.net.faults.FaultInjector`); :class:`ClassADownlinks` holds the rule that a downlink reaches
a Class A device only in a receive window after one of its uplinks. What the device's own MAC lets it send (airtime,
duty cycle, dwell time, fair use) is :mod:`kasmina_edge.net.radio_budget`, on the other side of the air.

Everything runs in simulated seconds passed in by the caller: nothing here sleeps or reads a clock, so a day of
a thousand devices simulates in seconds.
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass, field

from kasmina_edge.core.airtime import time_on_air_s
from kasmina_edge.core.profiles import LoRaProfile, NetworkProfile

# The fault types travel with the channel that applies them; kept importable from here for older callers.
from kasmina_edge.net.faults import FaultInjector, LossBurst
from kasmina_edge.net.radio_budget import RECEIVE_DELAY1_S, DutyCycleLedger, FairUseLedger, Transmission

__all__ = [
    "Channel",
    "ChannelStats",
    "ClassADownlinks",
    "Delivery",
    "DownlinkResult",
    "FaultInjector",
    "LossBurst",
]

# Gateway -> network server -> broker: an estimate (packet forwarder, backhaul, MQTT bridge), lognormal.
LORA_BACKHAUL_MEDIAN_S = 0.2
LORA_BACKHAUL_P99_S = 1.0
_Z99 = 2.3263478740408408  # NormalDist().inv_cdf(0.99), written out to keep this import light


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
