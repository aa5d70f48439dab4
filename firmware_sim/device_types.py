"""What every emulated device shares: its address (``emu://NAME``, ``dir:PATH``), the devices folder, and
what a flash and a boot return."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from firmware_sim.errors import DeviceError
from firmware_sim.kernel_store import KernelInstall
from kasmina_edge.contracts.bundle import Bundle
from kasmina_edge.core.profiles import HardwareProfile

DIR_BUNDLE = "kasmina.kedge"
DIR_MANIFEST = "manifest.json"


def devices_dir() -> Path:
    env = os.environ.get("KASMINA_DEVICES_DIR")
    return Path(env) if env else Path.home() / ".local" / "share" / "kasmina-edge" / "devices"


@dataclass(frozen=True)
class DeviceAddress:
    kind: Literal["emu", "dir"]
    name: str
    path: Path

    @classmethod
    def parse(cls, spec: str, root: Path | None = None) -> DeviceAddress:
        if spec.startswith("emu://"):
            name = spec[len("emu://") :]
            if (
                not name
                or "/" in name
                or name in (".", "..")
                or not all(c.isalnum() or c in "-_." for c in name)
            ):
                raise DeviceError(f"--device {spec}: a device name is letters, digits, '-', '_' or '.'")
            return cls("emu", name, (root or devices_dir()) / name)
        if spec.startswith("dir:"):
            path = Path(spec[len("dir:") :]).expanduser()
            if not str(path):
                raise DeviceError(f"--device {spec}: dir: needs a folder")
            return cls("dir", path.name or str(path), path)
        raise DeviceError(
            f"--device {spec!r}: use emu://NAME (an emulated device) or dir:PATH (mass storage)"
        )

    def __str__(self) -> str:
        return f"emu://{self.name}" if self.kind == "emu" else f"dir:{self.path}"


@dataclass
class FlashResult:
    device: str
    slot: str | None
    bundle_id: str | None
    version: int
    bytes: int
    target: str
    profile: str
    notes: list[str] = field(default_factory=list)
    kernels: KernelInstall | None = None  # a kernel-only bundle: what the kernel store did with it


@dataclass
class BootResult:
    bundle: Bundle
    slot: str | None
    trial: bool
    profile: HardwareProfile
    fallbacks: list[str] = field(default_factory=list)  # why other slots were not booted
