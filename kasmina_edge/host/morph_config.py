"""Morph's settings: the seeds' budget, the lifecycle's steps and the gates' bounds, and its presets."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

Progress = Callable[[str], None]  # one line of what is happening now


@dataclass(frozen=True)
class MorphConfig:
    conditions: tuple[str, ...] = ("emg", "baseline", "motion", "lead", "patient")
    target: str | None = "edgetpu"
    max_seed_fraction: float = 0.10  # parameters per seed, as a fraction of the base
    max_mac_fraction: float = 0.25  # MACs per seed (the latency budget), as a fraction of the base
    sites_per_condition: int = 2  # Tamiyo's best-ranked sites, each tried with its own seed
    train_epochs: int = 6  # TRAINING: passes over the adaptation data
    min_train_steps: int = 150  # ... but at least this many updates (small calibration sets)
    blend_steps: int = 6  # grafting steps from alpha 0 to 1
    blend_batches: int = 12  # seed updates between two grafting steps
    batch_size: int = 128
    lr: float = 1e-3  # seeds' base learning rate (Tamiyo's intensity multiplies it)
    min_gain: float = 0.01  # G4: macro-F1 gain over the pre-germination baseline needed to fossilize
    global_tolerance: float = 0.05  # G4: how much worse clean data may get with the seed in
    max_oscillation: float = 0.05  # G2: macro-F1 with rare classes moves a few points per step
    max_drift: float = 3.0  # G2: output drift, in reference standard deviations
    drift_penalty: float = 0.05  # weight of the seed's activation-drift penalty while it trains
    denoise_weight: float = 1.0  # with clean twins of the adaptation beats: pull the site's output towards clean
    gate_min_support: int = 25  # gates judge macro-F1 over classes with at least this many beats
    replay: bool = True  # mix clean training beats into the adaptation data
    tamiyo_imitation_steps: int = 300
    tamiyo_episodes: int = 60  # REINFORCE episodes of 64 situations each
    reward: str = ""  # Tamiyo's reward weights, e.g. "accuracy=0.2,params=2" (see tamiyo.reward)
    intensity: str = ""  # an intensity config (library name or TOML path, see host.intensity); "": none
    calibration_s: float = 90.0  # patient shift: seconds of each new patient used to adapt
    patients: int | None = None  # default: the base checkpoint's
    minutes: float | None = None
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


MORPH_PRESETS: dict[str, MorphConfig] = {
    "default": MorphConfig(),
    "tiny": MorphConfig(
        conditions=("emg", "lead"), sites_per_condition=1, train_epochs=3, blend_steps=4, blend_batches=4,
        batch_size=64, calibration_s=40.0, min_train_steps=60, tamiyo_imitation_steps=200, tamiyo_episodes=30,
    ),
}


def morph_config_for(
    preset: str,
    target: str,
    *,
    conditions: str | None = None,
    reward: str | None = None,
    intensity: str | None = None,
    seed: int | None = None,
    patients: int | None = None,
    minutes: float | None = None,
) -> MorphConfig:
    """The preset with the user's options (None: not given); ``target`` "host" means no device target. A bad
    preset, target, condition or reward term fails here, before any work."""
    import dataclasses

    from kasmina_edge.contracts.errors import KasminaError
    from kasmina_edge.host.blueprints import TARGETS
    from kasmina_edge.host.data import parse_conditions

    if preset not in MORPH_PRESETS:
        raise KasminaError(f"--preset: unknown {preset!r}; choose one of: {', '.join(MORPH_PRESETS)}")
    if target not in (*TARGETS, "host"):
        raise KasminaError(f"--target: unknown {target!r}; choose one of: {', '.join((*TARGETS, 'host'))}")
    changes: dict[str, Any] = {"target": None if target == "host" else target}
    if conditions is not None:
        changes["conditions"] = tuple(c.name for c in parse_conditions(conditions))
    if reward is not None:
        from kasmina_edge.host.tamiyo.reward import RewardWeights

        RewardWeights.parse(reward)  # a bad term fails here, before any work
        changes["reward"] = reward
    if intensity is not None:
        from kasmina_edge.host.intensity import resolve

        resolve(intensity)  # an unknown name or a bad file fails here, before any work
        changes["intensity"] = intensity
    for key, value in (("seed", seed), ("patients", patients), ("minutes", minutes)):
        if value is not None:
            changes[key] = value
    return dataclasses.replace(MORPH_PRESETS[preset], **changes)
