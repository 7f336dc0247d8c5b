"""The dataset format: its constants, the episode and window records, and the checks an episode must pass."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .actions import ActionSpec
from .errors import DatasetError

FORMAT = "worldsim-dataset"
FORMAT_VERSION = 2  # 2: "action_spec" in the manifest and vector actions; version 1 (text only) still reads
READ_VERSIONS = (1, 2)
MANIFEST = "dataset.json"
EPISODE_KEYS = ("frames", "actions", "rewards", "terminated", "caption")


@dataclass(frozen=True)
class Episode:
    """One recorded episode.

    Attributes:
        frames: (T+1, H, W, 3) uint8 — the reset frame, then one frame after each action.
        actions: T action phrases (text datasets) or (T, d) float32 (vector datasets); actions[t] was taken
            between frames[t] and frames[t+1].
        rewards: (T,) float32.
        terminated: (T,) bool.
        caption: scene caption ("" when none).
    """

    frames: np.ndarray
    actions: list[str] | np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    caption: str

    def __len__(self) -> int:
        return len(self.frames)


@dataclass(frozen=True)
class Windows:
    """A batch of random windows of `length` frames.

    Attributes:
        frames: (n, length, H, W, 3) uint8.
        actions: n lists of length-1 phrases (text), or (n, length-1, d) float32 (vector).
        rewards: (n, length-1) float32.
        terminated: (n, length-1) bool.
        captions: n captions.
        episodes: (n,) int64 episode index of each window.
        starts: (n,) int64 first frame index of each window within its episode.
    """

    frames: np.ndarray
    actions: list[list[str]] | np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    captions: list[str]
    episodes: np.ndarray
    starts: np.ndarray


def atomic_write(path: Path, write: Any) -> None:
    """Call `write(file)` on a temporary file next to `path`, then rename it over `path`."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def check_episode(frames: np.ndarray, actions: Sequence[str] | np.ndarray, rewards: np.ndarray, terminated: np.ndarray,
                  frame_size: tuple[int, int], where: str) -> None:
    """Raise DatasetError unless the arrays form a valid episode of (H, W) = frame_size frames."""
    h, w = frame_size
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[1:] != (h, w, 3):
        raise DatasetError(f"{where}: frames have shape {frames.shape} and dtype {frames.dtype}; expected "
                           f"(T+1, {h}, {w}, 3) uint8 as the manifest says. Re-record or re-import the "
                           f"episode (resize frames to {h}×{w}).")
    if len(frames) < 1:
        raise DatasetError(f"{where}: the episode has no frames; expected at least the reset frame.")
    t = len(frames) - 1
    for name, values in (("actions", actions), ("rewards", rewards), ("terminated", terminated)):
        if len(values) != t:
            raise DatasetError(f"{where}: {len(values)} {name} for {len(frames)} frames; expected "
                               f"frames-1 = {t} (one per transition). Re-record the episode.")


def check_vector_actions(actions: Any, spec: ActionSpec, where: str) -> np.ndarray:
    """Vector actions as float32 (T, d); DatasetError naming the step and value unless every row is d finite
    floats within the spec's bounds."""
    if isinstance(actions, str) or (isinstance(actions, (list, tuple)) and any(isinstance(a, str) for a in actions)):
        text = actions if isinstance(actions, str) else next(a for a in actions if isinstance(a, str))
        raise DatasetError(f"{where}: this dataset holds vector actions ({spec.describe()}); received the text "
                           f"{text!r}. Fix: pass a float array (T, {spec.dim}), or write a text dataset.")
    try:
        arr = np.asarray(actions, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise DatasetError(f"{where}: vector actions must be a float array (T, {spec.dim}); could not read them "
                           f"as one ({e}).") from None
    if arr.ndim == 1 and arr.size == 0:
        arr = arr.reshape(0, spec.dim)
    if arr.ndim != 2 or arr.shape[1] != spec.dim:
        raise DatasetError(f"{where}: vector actions have shape {arr.shape}; expected (T, {spec.dim}) for "
                           f"{spec.describe()}.")
    bad = ~np.isfinite(arr)
    if bad.any():
        t = int(np.argmax(bad.any(axis=1)))
        raise DatasetError(f"{where}: the action at step {t} is {arr[t].tolist()}; expected finite values.")
    lo, hi = np.asarray(spec.low), np.asarray(spec.high)
    # compared as stored (float32): a value on a bound stays on it, not one float32 rounding past it
    stored = arr.astype(np.float32)
    outside = (stored < lo.astype(np.float32)) | (stored > hi.astype(np.float32))
    if outside.any():
        t = int(np.argmax(outside.any(axis=1)))
        i = int(np.argmax(outside[t]))
        raise DatasetError(f"{where}: the action at step {t} is {arr[t].tolist()}: component {i} = {arr[t, i]:g} "
                           f"is outside its bounds [{lo[i]:g}, {hi[i]:g}]. Fix: clip the actions into the bounds, "
                           f"or write the dataset with wider bounds in its action spec.")
    return stored


def spec_dump(spec: ActionSpec | None, vocabulary: Sequence[str]) -> dict[str, Any]:
    """The manifest's "action_spec": the spec's dump; for text, with the vocabulary as it stands."""
    if spec is not None and spec.is_vector:
        return spec.model_dump(mode="json")
    if vocabulary:
        return ActionSpec.text(vocabulary).model_dump(mode="json")
    return {"kind": "text", "vocabulary": []}  # no action yet (single-frame episodes only)
