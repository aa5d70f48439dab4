"""Energy per inference, radio energy per telemetry frame, battery life at a heart rate and a telemetry plan.

* inference: the profile's active power over the estimated time of one beat (base chain + kernels),
  plus one controller decision per beat (the runtime decides on every beat by default);
* idle: the profile's idle power for the rest of each beat period;
* radio: each frame's time on air (``kasmina_edge.core.airtime``, the link simulator's own) at the
  network profile's transmit power; a LoRaWAN Class A device then opens two receive windows (RX1 at the
  uplink's data rate, RX2 at the region's DR0), each listening ``RX_WINDOW_SYMBOLS`` symbols for a preamble
  when nothing comes; an IP radio stays connected ``tail_s`` at its idle power after each frame;
  between frames the radio sleeps;
* battery: the profile's own, or for an MCU / NPU profile without one the reference patch cell
  (``REFERENCE_CELL``, the nrf52840 profile's) so that MCUs compare; mains-powered kinds have none.

Frames are the binary codec's (``contracts.codec.FRAME_SIZES``); JSON frames on broadband links are
larger, which the plan does not model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from kasmina_edge.core.airtime import time_on_air_s
from kasmina_edge.core.catalog import network
from kasmina_edge.core.profiles import Battery, HardwareProfile, IpLinkProfile, LoRaProfile, NetworkProfile

RX_WINDOW_SYMBOLS = 6  # preamble-detection timeout of an empty receive window (estimate; LoRaMac uses 6-8)
REFERENCE_CELL = Battery(capacity_mAh=200, voltage_v=3.7)  # the nrf52840 profile's ECG-patch Li-Po
DEFAULT_HEART_RATE_BPM = 72.0
DEFAULT_NETWORK = "lorawan-eu868-dr5"


@dataclass(frozen=True)
class TelemetryFrame:
    kind: str
    payload_bytes: int
    per_hour: float


def default_plan() -> tuple[TelemetryFrame, ...]:
    """Beat-class counts every 5 min, signal quality every 15 min, status hourly, ~2 anomaly and a few seed
    events a day-hour: what a patch that only sends labels and summaries sends."""
    from kasmina_edge.contracts.codec import FRAME_SIZES
    from kasmina_edge.contracts.telemetry import (
        AnomalyEvent,
        BeatCounts,
        DeviceStatus,
        SeedEvent,
        SignalQuality,
    )

    return (
        TelemetryFrame("beat_counts", FRAME_SIZES[BeatCounts], 12.0),
        TelemetryFrame("signal_quality", FRAME_SIZES[SignalQuality], 4.0),
        TelemetryFrame("device_status", FRAME_SIZES[DeviceStatus], 1.0),
        TelemetryFrame("anomaly_event", FRAME_SIZES[AnomalyEvent], 2.0),
        TelemetryFrame("seed_event", FRAME_SIZES[SeedEvent], 0.25),
    )


@dataclass(frozen=True)
class FrameEnergy:
    kind: str
    payload_bytes: int
    airtime_s: float
    tx_j: float
    rx_j: float  # receive windows (LoRa) or the connected tail (IP)

    @property
    def total_j(self) -> float:
        return self.tx_j + self.rx_j


def _symbol_s(sf: int, bw: float) -> float:
    return float(2**sf) / bw


def frame_energy(link: NetworkProfile, kind: str, payload_bytes: int) -> FrameEnergy:
    airtime = time_on_air_s(link, payload_bytes)
    if isinstance(link, LoRaProfile):
        rx1 = RX_WINDOW_SYMBOLS * _symbol_s(link.data_rate.spreading_factor, link.data_rate.bandwidth_hz)
        rx2 = rx1
        try:
            dr0 = network(link.name.rsplit("-dr", 1)[0] + "-dr0")
            if isinstance(dr0, LoRaProfile):
                rx2 = RX_WINDOW_SYMBOLS * _symbol_s(
                    dr0.data_rate.spreading_factor, dr0.data_rate.bandwidth_hz
                )
        except Exception:  # noqa: BLE001 - a region without DR0 in the catalog: RX2 as RX1
            pass
        return FrameEnergy(
            kind, payload_bytes, airtime, airtime * link.radio.tx_power_w, (rx1 + rx2) * link.radio.rx_power_w
        )
    assert isinstance(link, IpLinkProfile)
    return FrameEnergy(
        kind,
        payload_bytes,
        airtime,
        airtime * link.radio.tx_power_w,
        link.radio.tail_s * link.radio.idle_power_w,
    )


def _radio_sleep_w(link: NetworkProfile) -> float:
    return link.radio.sleep_power_w


@dataclass
class EnergyEstimate:
    profile: str
    heart_rate_bpm: float
    network: str
    inference_j: float  # one beat: the chain on the device
    decision_j: float  # one controller decision (every beat)
    idle_w: float
    compute_avg_w: float  # inference + decision + idle, averaged over time
    radio_j_per_hour: float
    airtime_s_per_hour: float
    radio_avg_w: float
    frames: list[FrameEnergy] = field(default_factory=list)
    battery_j: float | None = None
    battery_source: str = "mains"
    notes: list[str] = field(default_factory=list)

    @property
    def avg_power_w(self) -> float:
        return self.compute_avg_w + self.radio_avg_w

    @property
    def battery_life_days(self) -> float | None:
        if self.battery_j is None or self.avg_power_w <= 0:
            return None
        return self.battery_j / self.avg_power_w / 86400.0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["frames"] = [{**asdict(f), "total_j": f.total_j} for f in self.frames]
        out["avg_power_w"] = self.avg_power_w
        out["battery_life_days"] = self.battery_life_days
        return out


def battery_of(profile: HardwareProfile) -> tuple[float | None, str]:
    if profile.battery is not None:
        return (
            profile.battery.energy_j,
            f"{profile.name}: {profile.battery.capacity_mAh:g} mAh at {profile.battery.voltage_v:g} V",
        )
    if profile.kind in ("mcu", "npu"):
        return (
            REFERENCE_CELL.energy_j,
            f"reference cell {REFERENCE_CELL.capacity_mAh:g} mAh at {REFERENCE_CELL.voltage_v:g} V",
        )
    return None, "mains"


def estimate_energy(
    profile: HardwareProfile,
    beat_s: float,
    decision_s: float,
    *,
    heart_rate_bpm: float = DEFAULT_HEART_RATE_BPM,
    link: NetworkProfile | None = None,
    plan: Sequence[TelemetryFrame] | None = None,
    decision_profile: HardwareProfile | None = None,
) -> EnergyEstimate:
    """Average power and battery life of ``profile`` classifying every beat and sending ``plan`` over ``link``."""
    link = link if link is not None else network(DEFAULT_NETWORK)
    plan = tuple(plan) if plan is not None else default_plan()
    period = 60.0 / heart_rate_bpm
    decider = decision_profile or profile
    notes: list[str] = []
    inference = profile.power.active_w * beat_s
    decision = decider.power.active_w * decision_s
    busy = min(beat_s + (decision_s if decider is profile else 0.0), period)
    if beat_s + decision_s > period:
        notes.append(
            f"one beat's work ({(beat_s + decision_s) * 1e3:.1f} ms) exceeds the beat period ({period * 1e3:.0f} ms)"
        )
    compute_avg = (inference + decision) / period + profile.power.idle_w * (1.0 - busy / period)
    frames = [frame_energy(link, f.kind, f.payload_bytes) for f in plan]
    per_hour = sum(fe.total_j * f.per_hour for fe, f in zip(frames, plan, strict=True))
    airtime = sum(fe.airtime_s * f.per_hour for fe, f in zip(frames, plan, strict=True))
    radio_avg = per_hour / 3600.0 + _radio_sleep_w(link) * max(0.0, 1.0 - airtime / 3600.0)
    battery_j, source = battery_of(profile)
    if decider is not profile:
        notes.append(f"decisions on {decider.name} (its power)")
    return EnergyEstimate(
        profile=profile.name,
        heart_rate_bpm=heart_rate_bpm,
        network=link.name,
        inference_j=inference,
        decision_j=decision,
        idle_w=profile.power.idle_w,
        compute_avg_w=compute_avg,
        radio_j_per_hour=per_hour,
        airtime_s_per_hour=airtime,
        radio_avg_w=radio_avg,
        frames=frames,
        battery_j=battery_j,
        battery_source=source,
        notes=notes,
    )
