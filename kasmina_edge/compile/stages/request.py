"""What a build is asked for: the input of every stage."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kasmina_edge.compile.split import PATIENT_SITE_HEADROOM, SEGMENT_PROBE_GAINS

if TYPE_CHECKING:
    from kasmina_edge.compile.stages.windows import EvalSet

QAT_STEPS = 200


@dataclass
class BuildRequest:
    checkpoint: Path
    seeds: Path | None
    target: str
    profile: str | None = None
    bits: int = 8
    out: Path | None = None
    keys: Path | None = None
    # 12, not 6: measured on the default base (seed 0), MIT-BIH 100 argmax agreement 98.99 % → 99.43 %
    calibration_patients: int = 12
    heldout_patients: int = 12
    minutes: float = 3.0
    record100: Path | None = None  # default: ../shared/data/mitdb/100 beside the checkout, when present
    data_seed: int = 9173  # synthetic patients for calibration/evaluation: not the training ones
    qat_steps: int = QAT_STEPS
    parity_windows: int | None = None  # limit held-out windows (tests); None: all
    # A missed parity bound (argmax agreement, logit error): by default the bundle is written and the
    # miss recorded in its manifest and report (BuildResult.parity_misses); strict (release builds,
    # `build --strict`): a ParityError, and nothing is written.
    strict: bool = False
    # A kernel-only bundle for a base already on the device: the site grids (and the logit grid) are
    # forced to the base bundle's, so the kernels chain with its segments; only the kernels travel.
    site_grids: dict[int, Any] | None = None
    logit_grid: Any | None = None
    kernels_only: bool = False
    # A base reserves range at its sites for the patient kernels that come later: each site grid spans
    # this many times the range the calibration windows show (split.calibrate_site_grids; 1: none).
    site_headroom: float = PATIENT_SITE_HEADROOM
    # Every segment is also calibrated on its site's activations times these gains, saturated on the
    # site grid, so its interior holds what a kernel that arrives later hands on (split.plan_artifacts).
    probe_gains: tuple[float, ...] = SEGMENT_PROBE_GAINS
    # The bundle's version (devices refuse one not above their security counter); None: one more than the
    # newest the keys folder signed for this target (contracts.bundle.next_version), recorded there.
    version: int | None = None
    # The beats the kernels are for (a patient's window): the kernels' interior grids are calibrated on
    # them, and the kernels are judged on them first (PTQ tolerance, parity, reference vectors).
    kernel_beats: EvalSet | None = None
    # The base bundle's own segment artifacts (name -> bytes), with ``site_grids``: the kernels are checked
    # in the chain the device runs, not in segments exported again (their interiors would differ).
    base_segments: dict[str, bytes] | None = None
    manifest_extra: dict[str, Any] = field(default_factory=dict)  # merged into the manifest (e.g. "patient")

    def out_path(self) -> Path:
        return self.out or Path(f"{self.target}.kedge")
