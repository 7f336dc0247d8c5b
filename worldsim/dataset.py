"""Dataset format (a directory: `dataset.json` + one compressed `.npz` per episode), writer and loader."""

from __future__ import annotations

import json
import logging
import os
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DatasetError

logger = logging.getLogger(__name__)

FORMAT = "worldsim-dataset"
FORMAT_VERSION = 1
MANIFEST = "dataset.json"
EPISODE_KEYS = ("frames", "actions", "rewards", "terminated", "caption")


@dataclass(frozen=True)
class Episode:
    """One recorded episode.

    Attributes:
        frames: (T+1, H, W, 3) uint8 — the reset frame, then one frame after each action.
        actions: T action phrases; actions[t] was taken between frames[t] and frames[t+1].
        rewards: (T,) float32.
        terminated: (T,) bool.
        caption: scene caption ("" when none).
    """

    frames: np.ndarray
    actions: list[str]
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
        actions: n lists of length-1 phrases.
        rewards: (n, length-1) float32.
        terminated: (n, length-1) bool.
        captions: n captions.
        episodes: (n,) int64 episode index of each window.
        starts: (n,) int64 first frame index of each window within its episode.
    """

    frames: np.ndarray
    actions: list[list[str]]
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


def check_episode(frames: np.ndarray, actions: Sequence[str], rewards: np.ndarray, terminated: np.ndarray,
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


class DatasetWriter:
    """Write episodes one by one; `close()` writes the manifest last, atomically.

    Args:
        out_dir: directory to create (or reuse when empty).
        height, width: frame size in pixels.
        fps: frames per second of the recordings.
        actions: known action vocabulary; phrases seen later are appended in order of first appearance.
        source: free-form provenance stored in the manifest (env id, policy, seed, ...).
        overwrite: replace a dataset already in `out_dir` instead of raising.
    """

    def __init__(self, out_dir: str | os.PathLike, height: int, width: int, fps: float,
                 actions: Sequence[str] = (), source: dict[str, Any] | None = None, overwrite: bool = False):
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
        self.vocabulary = list(dict.fromkeys(actions))
        self.source = dict(source or {})
        self.episodes: list[dict[str, Any]] = []
        self.closed = False

    def add_episode(self, frames: np.ndarray, actions: Sequence[str], rewards: Sequence[float] | np.ndarray,
                    terminated: Sequence[bool] | np.ndarray, caption: str = "") -> Path:
        """Validate and write one episode.

        Args:
            frames: (T+1, H, W, 3) uint8.
            actions: T phrases.
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
        actions = [str(a) for a in actions]
        name = f"ep_{len(self.episodes):06d}.npz"
        check_episode(frames, actions, rewards, terminated, (self.height, self.width), f"episode {name}")
        arrays = {"frames": frames, "actions": np.array(actions, dtype=np.str_).reshape(len(actions)),
                  "rewards": rewards, "terminated": terminated,
                  "caption": np.array(str(caption), dtype=np.str_)}  # unicode arrays: no pickle needed
        path = self.path / name
        atomic_write(path, lambda f: np.savez_compressed(f, **arrays))
        self.vocabulary.extend(a for a in dict.fromkeys(actions) if a not in self.vocabulary)
        self.episodes.append({"file": name, "frames": int(len(frames))})
        return path

    def close(self) -> Path:
        """Write `dataset.json` (atomically) and return the dataset directory."""
        if self.closed:
            return self.path
        manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "height": self.height,
                    "width": self.width, "fps": self.fps, "actions": self.vocabulary,
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


def _read_manifest(path: Path) -> dict[str, Any]:
    if not path.is_dir():
        raise DatasetError(f"dataset directory {path} does not exist (or is not a directory); check the "
                           f"path, or create a dataset with `worldsim record`.")
    file = path / MANIFEST
    if not file.is_file():
        raise DatasetError(f"{file} is missing: {path} is not a worldsim dataset. Record one with "
                           f"`worldsim record`, or import videos with worldsim.record.import_videos.")
    try:
        manifest = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DatasetError(f"could not parse {file}: {e}. The manifest is damaged; re-record the "
                           f"dataset.") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        got = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise DatasetError(f"{file} has format {got!r}; expected {FORMAT!r}. This is not a worldsim dataset.")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise DatasetError(f"{file} has format_version {manifest.get('format_version')!r}; this worldsim "
                           f"reads version {FORMAT_VERSION}. Re-record the dataset or use a "
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
        """Action phrases, in the manifest's order."""
        return list(self.manifest["actions"])

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
        actions = arrays["actions"]
        if actions.dtype.kind != "U" or actions.ndim != 1:
            raise DatasetError(f"{file}: actions have dtype {actions.dtype} and shape {actions.shape}; "
                               f"expected a 1-d unicode array of phrases. Re-record the episode.")
        check_episode(frames, actions, arrays["rewards"], arrays["terminated"], self.frame_size, str(file))
        if len(frames) != entry["frames"]:
            raise DatasetError(f"{file} has {len(frames)} frames but {self.path / MANIFEST} says "
                               f"{entry['frames']}; manifest and episode disagree. Re-record the dataset.")
        return Episode(frames=frames, actions=[str(a) for a in actions],
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
        return Windows(
            frames=np.stack([e.frames[s:s + length] for e, s in pairs]),
            actions=[e.actions[s:s + length - 1] for e, s in pairs],
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
