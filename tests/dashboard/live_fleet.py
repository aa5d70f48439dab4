"""A few emulated devices driven in a thread (simulated time at ``speed``), and the dashboard around a broker.

The browser and fleet tests share these: :class:`Driver` steps :class:`FleetDevice` objects in a background
thread, under a lock the test takes to make a device do something (move its seed, raise an alarm), and records
when each device handed an uplink to MQTT (the start of the "appears within 2 s" clock).
"""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path
from typing import Any

from kasmina_edge.dashboard.emulated import FleetDevice, SeedPlan, fleet_record
from kasmina_edge.net.mqtt import MqttDeviceTransport
from kasmina_edge.net.packet import Uplink


class TimedTransport(MqttDeviceTransport):
    """The device's MQTT transport, remembering when each uplink was published."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.publish_times: list[float] = []

    def publish_uplink(self, uplink: Uplink, kind: str, qos: int) -> None:
        super().publish_uplink(uplink, kind, qos)
        self.publish_times.append(time.monotonic())


class Driver:
    def __init__(self, url: str, names: list[str], home: Path, *, link: str = "wifi", speed: float = 1.0,
                 fleet: str = "default", manual_seeds: bool = True) -> None:
        record = fleet_record(seed=1, minutes=1.0)
        self.lock = threading.Lock()
        self.speed = speed
        self.devices: dict[str, FleetDevice] = {}
        for i, name in enumerate(names):
            transport = TimedTransport(url, fleet, name)
            transport.connect()
            plan = SeedPlan(1, "k1", math.inf, 1.0) if manual_seeds else None
            self.devices[name] = FleetDevice(name, link, transport, record, home, seed=i, seed_plan=plan,
                                             epoch_unix=time.time())
        self._stop = threading.Event()
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def now(self) -> float:
        return (time.monotonic() - self._t0) * self.speed

    def _loop(self) -> None:
        while not self._stop.wait(0.05):
            with self.lock:
                for d in self.devices.values():
                    d.step(self.now())

    def publishes_after(self, name: str, t: float, timeout_s: float = 10.0) -> float:
        """When ``name`` next handed an uplink to MQTT after monotonic time ``t``."""
        transport: TimedTransport = self.devices[name].transport
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            later = [p for p in transport.publish_times if p >= t]
            if later:
                return later[0]
            time.sleep(0.01)
        raise AssertionError(f"{name} published nothing within {timeout_s} s")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for d in self.devices.values():
            d.transport.close()
