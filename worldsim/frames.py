"""Validation of frames and actions at the public edge: nothing is silently coerced."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import InvalidAction, InvalidFrames, suggest


def check_frames(
    frames: object, height: int, width: int, what: str = "frames", ndim: tuple[int, ...] = (4, 5)
) -> np.ndarray:
    """Return `frames` as a uint8 array of shape (..., height, width, 3) with ndim in `ndim`, or raise InvalidFrames.

    Expected layouts: a frame (H, W, 3), a clip (T, H, W, 3), a batch of clips (B, T, H, W, 3).
    """
    layouts = {3: "(H, W, 3)", 4: "(T, H, W, 3)", 5: "(B, T, H, W, 3)"}
    expected = " or ".join(layouts[n].replace("H", str(height)).replace("W", str(width)) for n in ndim)
    if not isinstance(frames, np.ndarray):
        raise InvalidFrames(
            f"{what} must be a numpy uint8 array {expected}; received {type(frames).__name__}. "
            "Fix: pass np.asarray(frames, dtype=np.uint8) of RGB images."
        )
    if frames.dtype != np.uint8:
        if np.issubdtype(frames.dtype, np.floating) and not np.isfinite(frames).all():
            raise InvalidFrames(
                f"{what} contain non-finite values (NaN or inf) and have dtype {frames.dtype}; expected finite "
                "uint8 RGB values in [0, 255]. Fix: clean the source, then convert to uint8."
            )
        lo, hi = (float(frames.min()), float(frames.max())) if frames.size else (0.0, 0.0)
        if lo < 0 or hi > 255:
            raise InvalidFrames(
                f"{what} have values in [{lo:g}, {hi:g}] (dtype {frames.dtype}); expected uint8 values in [0, 255]. "
                "Fix: rescale to [0, 255] before converting to uint8."
            )
        hint = "(x * 255).round().astype(np.uint8)" if hi <= 1.0 else "x.astype(np.uint8)"
        raise InvalidFrames(
            f"{what} have dtype {frames.dtype} with values in [{lo:g}, {hi:g}]; expected uint8 RGB in [0, 255]. "
            f"Fix: convert with {hint}."
        )
    if frames.ndim not in ndim or frames.shape[-3:] != (height, width, 3):
        raise InvalidFrames(
            f"{what} have shape {tuple(frames.shape)}; expected {expected} for this model "
            f"({height}×{width} RGB). Fix: resize with cv2.resize and stack frames along the first axis."
        )
    return frames


def check_action_count(actions: Sequence | None, frames: int, what: str = "actions") -> None:
    """A clip of T frames takes T-1 actions (the action after frame t leads to frame t+1)."""
    got = None if actions is None else len(actions)
    if got != frames - 1:
        raise InvalidAction(
            f"{what}: received {got} for a clip of {frames} frames; expected {frames - 1} "
            "(one action between each pair of consecutive frames). Fix: pass actions=[...] of length T-1."
        )


def check_discrete_action(action: object, vocabulary: Sequence[str], owner: str) -> str:
    """The phrase of a Discrete action: an int (or 0-d integer array) indexing `vocabulary`."""
    if isinstance(action, np.ndarray) and action.ndim == 0:
        action = action.item()
    last = len(vocabulary) - 1
    if isinstance(action, (bool, np.bool_)) or not isinstance(action, (int, np.integer)):
        raise InvalidAction(f"{owner}(action_mode='discrete') takes an int in [0, {last}]; received "
                            f"{type(action).__name__} {action!r}. For phrases create it with action_mode='text'.")
    if not 0 <= int(action) <= last:
        raise InvalidAction(f"action {int(action)} is out of range; expected an int in [0, {last}] "
                            f"indexing {list(vocabulary)}.")
    return vocabulary[int(action)]


def check_env_phrase(action: object, vocabulary: Sequence[str], owner: str) -> str:
    """A ground-truth world's text action (action_mode='text'): one of `vocabulary`, with a suggestion if misspelt."""
    if not isinstance(action, str):
        raise InvalidAction(f"{owner}(action_mode='text') takes a phrase, got {action!r} ({type(action).__name__}); "
                            f"use one of {list(vocabulary)}.")
    if action not in vocabulary:
        raise InvalidAction(f"unknown action {action!r}.{suggest(action, vocabulary)} The vocabulary is "
                            f"{list(vocabulary)}.")
    return action
