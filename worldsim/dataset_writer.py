"""`DatasetWriter`: write a dataset episode by episode; the manifest last, atomically."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .actions import ActionSpec
from .dataset_format import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    atomic_write,
    check_episode,
    check_vector_actions,
    spec_dump,
)
from .errors import DatasetError

logger = logging.getLogger(__name__)


class DatasetWriter:
    """Write episodes one by one; `close()` writes the manifest last, atomically.

    Args:
        out_dir: directory to create (or reuse when empty).
        height, width: frame size in pixels.
        fps: frames per second of the recordings.
        actions: known action vocabulary (text); phrases seen later are appended in order of first appearance.
        source: free-form provenance stored in the manifest (env id, policy, seed, ...).
        overwrite: replace a dataset already in `out_dir` instead of raising.
        action_spec: what the actions are; None or a text spec: phrases (its vocabulary comes first, then
            `actions`, then new phrases as they appear); a vector spec: float arrays (T, d) within its bounds.
    """

    def __init__(self, out_dir: str | os.PathLike, height: int, width: int, fps: float,
                 actions: Sequence[str] = (), source: dict[str, Any] | None = None, overwrite: bool = False,
                 action_spec: ActionSpec | None = None):
        if action_spec is not None and not isinstance(action_spec, ActionSpec):
            raise DatasetError(f"action_spec must be a worldsim.actions.ActionSpec or None; received "
                               f"{type(action_spec).__name__}.")
        if action_spec is not None and action_spec.is_vector and list(actions):
            raise DatasetError(f"a vector dataset ({action_spec.describe()}) takes no phrase vocabulary; received "
                               f"actions={list(actions)!r}.")
        self.path = Path(out_dir)
        if (self.path / MANIFEST).exists():
            if not overwrite:
                raise DatasetError(f"{self.path} already holds a dataset ({MANIFEST} exists); choose a new "
                                   f"directory, delete it, or pass overwrite=True.")
            (self.path / MANIFEST).unlink()
            for old in self.path.glob("ep_*.npz"):
                old.unlink()
        self.path.mkdir(parents=True, exist_ok=True)
        self.height, self.width, self.fps = int(height), int(width), float(fps)
        self.spec = action_spec
        known = action_spec.vocabulary if action_spec is not None else ()
        self.vocabulary = list(dict.fromkeys([*known, *actions]))
        self.source = dict(source or {})
        self.episodes: list[dict[str, Any]] = []
        self.closed = False

    @property
    def is_vector(self) -> bool:
        return self.spec is not None and self.spec.is_vector

    def add_episode(self, frames: np.ndarray, actions: Sequence[str] | np.ndarray,
                    rewards: Sequence[float] | np.ndarray, terminated: Sequence[bool] | np.ndarray,
                    caption: str = "") -> Path:
        """Validate and write one episode.

        Args:
            frames: (T+1, H, W, 3) uint8.
            actions: T phrases (text dataset), or (T, d) floats within the spec's bounds (vector dataset).
            rewards: (T,) floats.
            terminated: (T,) bools.
            caption: scene caption.

        Returns:
            The path of the episode file.
        """
        if self.closed:
            raise DatasetError(f"DatasetWriter for {self.path} is closed; open a new writer to add episodes.")
        frames = np.asarray(frames)
        rewards = np.asarray(rewards, np.float32).reshape(-1)
        terminated = np.asarray(terminated, bool).reshape(-1)
        name = f"ep_{len(self.episodes):06d}.npz"
        where = f"episode {name}"
        if self.spec is not None and self.spec.is_vector:
            vectors = check_vector_actions(actions, self.spec, where)
            check_episode(frames, vectors, rewards, terminated, (self.height, self.width), where)
            stored = vectors
            phrases: list[str] = []
        else:
            if isinstance(actions, np.ndarray) and actions.ndim == 2:
                raise DatasetError(f"{where}: received vector actions of shape {actions.shape} for a text dataset; "
                                   "Fix: open the writer with action_spec=ActionSpec.vector(low, high).")
            phrases = [str(a) for a in actions]
            check_episode(frames, phrases, rewards, terminated, (self.height, self.width), where)
            stored = np.array(phrases, dtype=np.str_).reshape(len(phrases))
        arrays = {"frames": frames, "actions": stored,
                  "rewards": rewards, "terminated": terminated,
                  "caption": np.array(str(caption), dtype=np.str_)}  # unicode arrays: no pickle needed
        path = self.path / name
        # numpy's stub lets the ** arrays fill its `allow_pickle: bool` keyword; all four are arrays
        atomic_write(path, lambda f: np.savez_compressed(f, **arrays))  # type: ignore[arg-type]
        self.vocabulary.extend(a for a in dict.fromkeys(phrases) if a not in self.vocabulary)
        self.episodes.append({"file": name, "frames": int(len(frames))})
        return path

    def close(self) -> Path:
        """Write `dataset.json` (atomically) and return the dataset directory."""
        if self.closed:
            return self.path
        manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "height": self.height,
                    "width": self.width, "fps": self.fps, "actions": self.vocabulary,
                    "action_spec": spec_dump(self.spec, self.vocabulary),
                    "episodes": self.episodes, "episode_count": len(self.episodes),
                    "frame_count": sum(e["frames"] for e in self.episodes), "source": self.source}
        text = json.dumps(manifest, indent=2).encode()
        atomic_write(self.path / MANIFEST, lambda f: f.write(text))
        self.closed = True
        logger.info("wrote %d episodes to %s", len(self.episodes), self.path)
        return self.path

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None:
            self.close()
