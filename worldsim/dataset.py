"""Datasets (a directory: `dataset.json` + one compressed `.npz` per episode): the loader, with the format and
the writer re-exported from `dataset_format` and `dataset_writer`.

Actions follow the dataset's action spec (`dataset.json` "action_spec"): text phrases stored as a unicode array,
or vectors stored as float32 (T, d). Version 1 manifests (text only, no "action_spec") still read.
"""

from __future__ import annotations

import json
import logging
import os
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from .actions import ActionSpec
from .dataset_format import (
    EPISODE_KEYS,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    READ_VERSIONS,
    Episode,
    Windows,
    atomic_write,
    check_episode,
    check_vector_actions,
    spec_dump,
)
from .dataset_writer import DatasetWriter
from .errors import DatasetError

logger = logging.getLogger(__name__)

__all__ = ["EPISODE_KEYS", "FORMAT", "FORMAT_VERSION", "MANIFEST", "READ_VERSIONS", "Dataset", "DatasetWriter",
           "Episode", "WindowLoader", "Windows", "atomic_write", "check_episode", "check_vector_actions",
           "spec_dump"]


def _read_manifest(path: Path) -> dict[str, Any]:
    if not path.is_dir():
        raise DatasetError(f"dataset directory {path} does not exist (or is not a directory); check the "
                           f"path, or create a dataset with `worldsim record`.")
    file = path / MANIFEST
    if not file.is_file():
        raise DatasetError(f"{file} is missing: {path} is not a worldsim dataset. Record one with "
                           f"`worldsim record`, or import videos with `worldsim record --import-videos`.")
    try:
        manifest = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DatasetError(f"could not parse {file}: {e}. The manifest is damaged; re-record the "
                           f"dataset.") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        got = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise DatasetError(f"{file} has format {got!r}; expected {FORMAT!r}. This is not a worldsim dataset.")
    if manifest.get("format_version") not in READ_VERSIONS:
        raise DatasetError(f"{file} has format_version {manifest.get('format_version')!r}; this worldsim "
                           f"reads versions {list(READ_VERSIONS)}. Re-record the dataset or use a "
                           f"matching worldsim version.")
    for key in ("height", "width", "fps", "actions", "episodes"):
        if key not in manifest:
            raise DatasetError(f"{file} lacks the key {key!r}; the manifest is incomplete. Re-record the "
                               f"dataset.")
    episodes = manifest["episodes"]
    if not isinstance(episodes, list) or not all(isinstance(e, dict) and "file" in e and "frames" in e
                                                  for e in episodes):
        raise DatasetError(f"{file}: 'episodes' must be a list of {{'file', 'frames'}} entries. "
                           f"Re-record the dataset.")
    totals = (("episode_count", len(episodes)), ("frame_count", sum(e["frames"] for e in episodes)))
    for key, expected in totals:
        if key in manifest and manifest[key] != expected:
            raise DatasetError(f"{file}: {key} is {manifest[key]} but the episode list gives {expected}; "
                               f"the manifest is inconsistent. Re-record the dataset.")
    return manifest


def _read_spec(manifest: dict[str, Any], file: Path) -> ActionSpec | None:
    """The manifest's action spec (version 1: text from its vocabulary); None for a text dataset with no action."""
    raw = manifest.get("action_spec")
    vocabulary = list(manifest["actions"])
    if raw is None or (isinstance(raw, dict) and raw.get("kind", "text") == "text" and not raw.get("vocabulary")):
        if raw is None and manifest.get("format_version", 1) >= 2:
            raise DatasetError(f"{file} lacks the key 'action_spec'; a version 2 manifest names its actions. "
                               "Re-record the dataset.")
        return ActionSpec.text(vocabulary) if vocabulary else None
    try:
        spec = ActionSpec.model_validate(raw)
    except ValidationError as e:
        raise DatasetError(f"{file}: 'action_spec' is not a valid action spec: {e.errors()[0]['msg']}. "
                           "Re-record the dataset.") from None
    if spec.kind == "text" and list(spec.vocabulary) != vocabulary:
        raise DatasetError(f"{file}: 'action_spec' lists {list(spec.vocabulary)} but 'actions' lists {vocabulary}; "
                           "the manifest is inconsistent. Re-record the dataset.")
    return spec


class Dataset:
    """Read a dataset directory; episodes are validated against the manifest when loaded.

    Args:
        path: the dataset directory.
        cache: keep loaded episodes in memory (datasets here are a few hundred MB at most);
            False re-reads the compressed file on every access.
    """

    def __init__(self, path: str | os.PathLike, cache: bool = True):
        self.path = Path(path)
        self.manifest = _read_manifest(self.path)
        self._spec = _read_spec(self.manifest, self.path / MANIFEST)
        self.cache = cache
        self._episodes: dict[int, Episode] = {}
        self._lengths = np.array([int(e["frames"]) for e in self.manifest["episodes"]], np.int64)
        for entry in self.manifest["episodes"]:
            file = self.path / entry["file"]
            if not file.is_file():
                raise DatasetError(f"episode file {file} listed in {self.path / MANIFEST} is missing; "
                                   f"restore it or re-record the dataset.")

    def __len__(self) -> int:
        return len(self.manifest["episodes"])

    def __iter__(self) -> Iterator[Episode]:
        return (self.episode(i) for i in range(len(self)))

    @property
    def vocabulary(self) -> list[str]:
        """Action phrases, in the manifest's order ([] for a vector dataset)."""
        return list(self.manifest["actions"])

    @property
    def action_spec(self) -> ActionSpec:
        """What the actions are: text (the vocabulary) or vector (dim and bounds)."""
        if self._spec is None:
            raise DatasetError(f"{self.path} holds no action (every episode is a single frame), so it has no "
                               "action spec. Record episodes of at least one step.")
        return self._spec

    @property
    def has_actions(self) -> bool:
        """False only for a text dataset whose episodes are single frames (no action, so no spec)."""
        return self._spec is not None

    @property
    def is_vector(self) -> bool:
        return self._spec is not None and self._spec.is_vector

    def check_vocabulary(self, vocabulary: Sequence[str]) -> None:
        """DatasetError unless every phrase of this (text) dataset is in `vocabulary` (a model's), listing those
        it lacks."""
        if self.is_vector:
            raise DatasetError(f"{self.path} holds vector actions ({self.action_spec.describe()}), not phrases; "
                               "train a model with a vector action spec on it.")
        known = set(vocabulary)
        missing = [a for a in self.vocabulary if a not in known]
        if missing:
            raise DatasetError(f"{self.path} has {len(missing)} action phrase(s) that the model's vocabulary lacks: "
                               f"{missing}; the model knows {list(vocabulary)}. Fix: train a model whose vocabulary "
                               "includes them (a new model takes the dataset's vocabulary).")

    @property
    def frame_size(self) -> tuple[int, int]:
        """(height, width) in pixels."""
        return int(self.manifest["height"]), int(self.manifest["width"])

    @property
    def fps(self) -> float:
        return float(self.manifest["fps"])

    @property
    def episode_lengths(self) -> list[int]:
        """Frames per episode (T+1), from the manifest."""
        return self._lengths.tolist()

    def episode(self, i: int) -> Episode:
        """Load (and validate) episode `i`."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"episode {i} is out of range for a dataset of {len(self)} episodes.")
        i %= len(self)
        if i in self._episodes:
            return self._episodes[i]
        episode = self._load(i)
        if self.cache:
            self._episodes[i] = episode
        return episode

    def validate(self) -> None:
        """Load every episode once, raising DatasetError on the first problem."""
        for i in range(len(self)):
            self.episode(i)

    def _load(self, i: int) -> Episode:
        entry = self.manifest["episodes"][i]
        file = self.path / entry["file"]
        try:
            with np.load(file, allow_pickle=False) as npz:
                missing = [k for k in EPISODE_KEYS if k not in npz.files]
                if missing:
                    raise DatasetError(f"{file} lacks the key(s) {missing}; an episode needs "
                                       f"{list(EPISODE_KEYS)}. Re-record the episode.")
                arrays = {k: npz[k] for k in EPISODE_KEYS}
        except DatasetError:
            raise
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise DatasetError(f"could not read {file}: {e}. The file is corrupt or truncated; "
                               f"re-record it.") from e
        frames = arrays["frames"]
        raw = arrays["actions"]
        actions: list[str] | np.ndarray
        if self._spec is not None and self._spec.is_vector:
            if raw.dtype.kind != "f":
                raise DatasetError(f"{file}: actions have dtype {raw.dtype}; a vector dataset stores float32 "
                                   f"(T, {self._spec.dim}). Re-record the episode.")
            actions = check_vector_actions(raw, self._spec, str(file))
        else:
            if raw.dtype.kind != "U" or raw.ndim != 1:
                raise DatasetError(f"{file}: actions have dtype {raw.dtype} and shape {raw.shape}; "
                                   f"expected a 1-d unicode array of phrases. Re-record the episode.")
            actions = [str(a) for a in raw]
            stray = sorted(set(actions) - set(self.vocabulary))
            if stray:
                raise DatasetError(f"{file} holds action phrase(s) {stray} that {self.path / MANIFEST} does not list "
                                   f"in its vocabulary {self.vocabulary}; manifest and episode disagree. Re-record "
                                   "the dataset (or add the phrases to the manifest's 'actions' and 'action_spec').")
        check_episode(frames, actions, arrays["rewards"], arrays["terminated"], self.frame_size, str(file))
        if len(frames) != entry["frames"]:
            raise DatasetError(f"{file} has {len(frames)} frames but {self.path / MANIFEST} says "
                               f"{entry['frames']}; manifest and episode disagree. Re-record the dataset.")
        return Episode(frames=frames, actions=actions,
                       rewards=arrays["rewards"].astype(np.float32),
                       terminated=arrays["terminated"].astype(bool), caption=str(arrays["caption"]))

    def sample_windows(self, n: int, length: int, rng: np.random.Generator,
                       episodes: Sequence[int] | None = None) -> Windows:
        """Draw `n` windows of `length` consecutive frames, uniformly over all windows that fit.

        Episodes shorter than `length` are skipped. The same generator state gives the same windows.

        Args:
            n: number of windows.
            length: frames per window (≥ 1); each window has length-1 actions.
            rng: the generator to draw from.
            episodes: restrict to these episode indices (e.g. the training split).

        Returns:
            Windows with frames (n, length, H, W, 3) uint8.
        """
        if length < 1 or n < 1:
            raise ValueError(f"sample_windows needs n >= 1 and length >= 1, got n={n}, length={length}.")
        pool = list(range(len(self))) if episodes is None else [int(i) for i in episodes]
        lengths = self._lengths[pool]
        fits = lengths >= length
        if not fits.any():
            longest = int(lengths.max()) if len(lengths) else 0
            raise DatasetError(f"no episode of {self.path} has {length} frames (the longest has {longest}); "
                               f"use a window length <= {longest} or record longer episodes.")
        counts = np.where(fits, lengths - length + 1, 0)
        picks = rng.choice(len(pool), size=n, p=counts / counts.sum())
        starts = rng.integers(0, counts[picks])
        chosen = [pool[p] for p in picks]
        pairs = [(self.episode(i), int(s)) for i, s in zip(chosen, starts, strict=True)]
        eps = [e for e, _ in pairs]
        actions: list[list[str]] | np.ndarray
        if self.is_vector:  # (n, length-1, d) float32
            actions = np.stack([e.actions[s:s + length - 1] for e, s in pairs]).astype(np.float32)
        else:
            actions = [list(e.actions[s:s + length - 1]) for e, s in pairs]
        return Windows(
            frames=np.stack([e.frames[s:s + length] for e, s in pairs]),
            actions=actions,
            rewards=np.stack([e.rewards[s:s + length - 1] for e, s in pairs]),
            terminated=np.stack([e.terminated[s:s + length - 1] for e, s in pairs]),
            captions=[e.caption for e in eps],
            episodes=np.array(chosen, np.int64), starts=starts.astype(np.int64))

    def split(self, holdout_fraction: float, seed: int = 0) -> tuple[list[int], list[int]]:
        """Deterministic (train, held_out) episode indices; at least one episode stays in training.

        A positive fraction holds out at least one episode when there are two or more.
        """
        if not 0.0 <= holdout_fraction < 1.0:
            raise ValueError(f"holdout_fraction must be in [0, 1), got {holdout_fraction}.")
        order = np.random.default_rng(seed).permutation(len(self))
        held = round(holdout_fraction * len(self))
        if holdout_fraction > 0 and len(self) > 1:
            held = min(max(held, 1), len(self) - 1)
        return sorted(int(i) for i in order[held:]), sorted(int(i) for i in order[:held])


class WindowLoader:
    """An endless, seeded iterator of window batches for training.

    Args:
        dataset: the dataset (episodes stay cached in memory once loaded).
        batch_size: windows per batch.
        length: frames per window.
        seed: seed of the loader's generator.
        episodes: restrict to these episode indices (e.g. the training split).
    """

    def __init__(self, dataset: Dataset, batch_size: int, length: int, seed: int = 0,
                 episodes: Sequence[int] | None = None):
        self.dataset, self.batch_size, self.length = dataset, batch_size, length
        self.episodes = None if episodes is None else list(episodes)
        self.rng = np.random.default_rng(seed)
        if dataset.cache:  # preload so the first batches are not slower than the rest
            for i in self.episodes if self.episodes is not None else range(len(dataset)):
                dataset.episode(i)

    def __iter__(self) -> Iterator[Windows]:
        return self

    def __next__(self) -> Windows:
        return self.dataset.sample_windows(self.batch_size, self.length, self.rng, self.episodes)
