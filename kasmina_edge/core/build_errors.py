"""Errors a user can cause while building: each names the artifact and the limit it broke."""

from __future__ import annotations

from kasmina_edge.contracts.errors import KasminaError


class BuildError(KasminaError):
    """Base of every build failure a user can cause or fix."""


class NoCheckpointError(BuildError):
    """The checkpoint (or the seed library) named on the command line is missing or unreadable."""


class UnknownTargetError(BuildError):
    """A target or hardware profile name the catalog does not know."""


class UnsupportedBlueprintError(BuildError):
    """A seed kernel whose blueprint the chosen target cannot run."""


class ProfileLimitError(BuildError):
    """An artifact that does not fit the hardware profile (flash, SRAM, parameter cache)."""


class CutMismatchError(BuildError):
    """Quantization parameters differ across a cut, so chaining int8 segments would not be exact."""


class ParityError(BuildError):
    """An exported artifact disagrees with its reference beyond the stated bound."""
