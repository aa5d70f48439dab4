"""Errors a user can cause. The CLI prints them as one line, never a traceback."""

from __future__ import annotations


class KasminaError(Exception):
    """Base for every error a user can cause (bad file, bad field, limit exceeded)."""


class MissingExtraError(KasminaError):
    """An optional dependency is not installed; the message names the extra."""


class IllegalTransitionError(KasminaError):
    """A lifecycle move the transition table does not allow, or whose gate did not pass."""


class FrameError(KasminaError):
    """A telemetry frame that cannot be decoded (bad CRC, version, length or kind)."""


class CommandRejected(KasminaError):
    """A signed command that the verifier refuses (signature, replay, freshness)."""
