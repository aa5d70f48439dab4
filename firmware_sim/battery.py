"""Battery model: energy per inference and per radio frame, from the hardware profile.

An inference costs the profile's active power over its estimated device time; a radio frame costs the
radio's transmit power over its time on air. Between the two the device idles (idle power over the
signal time that passed). A profile without a battery is mains-powered: its charge stays full.
"""

from __future__ import annotations

from dataclasses import dataclass

from kasmina_edge.core.profiles import HardwareProfile


@dataclass
class BatteryModel:
    profile: HardwareProfile
    used_j: float = 0.0
    inference_j: float = 0.0
    radio_j: float = 0.0
    idle_j: float = 0.0
    frames: int = 0

    @property
    def capacity_j(self) -> float | None:
        b = self.profile.battery
        return b.energy_j if b is not None else None

    @property
    def charge(self) -> float:
        """State of charge 0..1 (1.0 for a mains-powered profile)."""
        cap = self.capacity_j
        if cap is None:
            return 1.0
        return max(0.0, 1.0 - self.used_j / cap)

    def inference(self, device_s: float) -> float:
        e = self.profile.power.active_w * device_s
        self.inference_j += e
        self.used_j += e
        return e

    def idle(self, seconds: float) -> float:
        e = self.profile.power.idle_w * max(0.0, seconds)
        self.idle_j += e
        self.used_j += e
        return e

    def radio_frame(self, airtime_s: float) -> float:
        tx = self.profile.power.radio_tx_w
        e = (tx if tx is not None else 0.0) * airtime_s
        self.radio_j += e
        self.used_j += e
        self.frames += 1
        return e

    def to_dict(self) -> dict[str, float | int | None]:
        return {
            "charge": round(self.charge, 6),
            "used_j": self.used_j,
            "inference_j": self.inference_j,
            "radio_j": self.radio_j,
            "idle_j": self.idle_j,
            "frames": self.frames,
            "capacity_j": self.capacity_j,
        }
