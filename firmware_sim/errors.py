"""The emulated device's errors (one module, so the device and its kernel store share them)."""

from __future__ import annotations

from kasmina_edge.contracts.errors import KasminaError


class DeviceError(KasminaError):
    """A device that cannot do what was asked (no bootable slot, unknown device, bad address)."""


class FlashRefused(DeviceError):
    """A bundle the device will not take: target, size, version, signature."""
