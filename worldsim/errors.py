"""The WorldSimError family: every user-facing failure says what it got, what it expected, how to fix it."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class WorldSimError(Exception):
    """Base class of every error worldsim raises on purpose."""


class ConfigError(WorldSimError, ValueError):
    """A configuration or preset is invalid or unknown."""


class InvalidFrames(WorldSimError, ValueError):
    """Frames with the wrong shape, dtype, value range, or non-finite values."""


class InvalidAction(WorldSimError, ValueError):
    """An action that is not a string, or not in a strict vocabulary, or the wrong count."""


class SessionStateError(WorldSimError, RuntimeError):
    """A session call made in the wrong state (e.g. step before reset, use after close)."""


class CheckpointError(WorldSimError, OSError):
    """A checkpoint directory that is missing, incomplete, corrupt, or of another format version."""


class DatasetError(WorldSimError, ValueError):
    """A dataset file that is missing, corrupt, or does not match its manifest."""


def suggest(name: str, choices: Iterable[str]) -> str:
    """' Did you mean 'x'?' for the closest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" Did you mean {close[0]!r}?" if close else ""
