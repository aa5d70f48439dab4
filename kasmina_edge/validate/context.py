"""What the stages of one validation share: the inputs, the verified bundle and its loaded image, the records,
the runs already made (stage 2 reuses stage 1's base runs), the figures' data and the scratch folders."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kasmina_edge.contracts.bundle import Bundle
from kasmina_edge.core.profiles import HardwareProfile
from kasmina_edge.ecg.types import Record
from kasmina_edge.runtime.image import Image
from kasmina_edge.validate.device_run import StreamResult
from kasmina_edge.validate.plan import Plan
from kasmina_edge.validate.records import RecordRef


def _quiet(message: str) -> None:
    return None


@dataclass
class ValidationContext:
    bundle_path: Path
    plan: Plan
    records: list[RecordRef]
    workdir: Path  # scratch: emulated devices, the run's logs (sealed), certify's evidence
    keys: Path | None = None  # the keys folder that verifies (and signs the report); None: the default one
    profile_name: str | None = None  # hardware profile; None: the bundle's own
    link: str | None = None  # network profile for stage 4; None: the plan's
    kernel_paths: list[Path] = field(default_factory=list)  # kernel-only bundles (a patient's seeds) on the base
    say: Callable[[str], None] = _quiet  # progress lines
    bundle: Bundle | None = None
    image: Image | None = None
    loaded: dict[str, Record] = field(default_factory=dict)
    base_runs: dict[str, StreamResult] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)  # data the report draws (confusion, per record, ...)

    @property
    def logs_dir(self) -> Path:
        return self.workdir / "logs"

    @property
    def devices_dir(self) -> Path:
        return self.workdir / "devices"

    def reset_scratch(self) -> None:
        """Empty this run's emulated devices and logs (a --workdir kept from an earlier run holds flashed devices
        that would refuse the same bundle as not newer, and logs certify would scan as this run's)."""
        import shutil

        for folder in (self.devices_dir, self.logs_dir):
            if folder.exists():
                shutil.rmtree(folder)

    def hardware(self) -> HardwareProfile:
        from kasmina_edge.core.catalog import hardware

        assert self.bundle is not None
        return hardware(self.profile_name or self.bundle.manifest.profile)

    def record(self, ref: RecordRef) -> Record:
        if ref.name not in self.loaded:
            self.loaded[ref.name] = ref.read()
        return self.loaded[ref.name]
