"""Import a Minari dataset held locally (a dataset id in the local Minari root, or a path) as a worldsim dataset:
image observations as frames, Discrete actions as phrases, Box actions as vectors
(`worldsim record --import-minari NAME|PATH`). Nothing is downloaded."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm import tqdm

from ..dataset import DatasetWriter
from ..errors import DatasetError, WorldSimError, suggest
from ..video import action_bounds, resize_frames
from .common import bounded_spec, staged_output

logger = logging.getLogger(__name__)

DEFAULT_FPS = 16.0  # when the dataset's env cannot be made to read its render_fps


def _minari() -> Any:
    try:
        import minari
    except ModuleNotFoundError:
        raise WorldSimError("importing a Minari dataset needs the minari package; install it with "
                            "pip install 'worldsim-sdk[minari]' (or pip install 'minari[arrow,hdf5]').") from None
    return minari


def _is_image(space: gym.Space) -> bool:
    return isinstance(space, gym.spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3 and \
        space.shape[2] == 3


def _describe(space: gym.Space) -> str:
    if isinstance(space, gym.spaces.Box):
        return f"Box{tuple(space.shape)} {space.dtype}"
    return type(space).__name__


def _open(minari: Any, name: str) -> tuple[Any, str]:
    """The MinariDataset of a path (the dataset folder or its data/ folder) or of a local dataset id."""
    path = Path(name)
    if path.exists():
        data = next((p for p in (path / "data", path) if (p / "metadata.json").is_file()), None)
        if data is None:
            raise DatasetError(f"{path} is not a Minari dataset: neither {path / 'data' / 'metadata.json'} nor "
                               f"{path / 'metadata.json'} exists.")
        where = str(path)
    else:
        root = minari.storage.get_dataset_path()
        data = minari.storage.get_dataset_path(name) / "data"
        if not (data / "metadata.json").is_file():
            local = sorted(minari.list_local_datasets())
            raise DatasetError(f"no Minari dataset {name!r} in the local Minari root {root} (MINARI_DATASETS_PATH); "
                               f"local datasets: {local}.{suggest(name, local)} Fix: pass a local dataset id or a "
                               "path (worldsim downloads nothing: `minari download ID` fetches one).")
        where = f"{name} ({data.parent})"
    try:
        return minari.MinariDataset(data), where
    except (ValueError, KeyError, OSError, TypeError, AssertionError) as e:
        raise DatasetError(f"could not read the Minari dataset {where}: {e}") from None


def _image_key(space: gym.Space, obs_key: str | None, where: str) -> str | None:
    """The key of the image observation (None: the observation itself is the image); DatasetError naming what the
    observations are otherwise."""
    if isinstance(space, gym.spaces.Dict):
        shapes = {k: _describe(s) for k, s in space.spaces.items()}
        if obs_key is not None:
            if obs_key not in space.spaces:
                raise DatasetError(f"{where}: --obs-key {obs_key!r} is not an observation key; the observations are "
                                   f"{shapes}.{suggest(obs_key, list(shapes))}")
            if not _is_image(space[obs_key]):
                raise DatasetError(f"{where}: observation {obs_key!r} is {shapes[obs_key]}; expected an image "
                                   "(H, W, 3) uint8.")
            return obs_key
        images = [k for k, s in space.spaces.items() if _is_image(s)]
        if len(images) != 1:
            raise DatasetError(f"{where}: the observations are a dict {shapes}; {len(images)} of them are images "
                               "(H, W, 3) uint8. Fix: name one with --obs-key KEY." if images else
                               f"{where}: the observations are a dict {shapes} with no image (H, W, 3) uint8 in it; "
                               "worldsim imports image observations. Record the env's renders instead "
                               "(worldsim record --env ID).")
        return images[0]
    if obs_key is not None:
        raise DatasetError(f"{where}: --obs-key {obs_key!r} given, but the observations are {_describe(space)}, not "
                           "a dict.")
    if not _is_image(space):
        raise DatasetError(f"{where}: the observations are {_describe(space)}; worldsim imports image observations "
                           "(H, W, 3) uint8 (or a dict holding one: --obs-key). Record the env's renders instead "
                           "(worldsim record --env ID).")
    return None


def _env(dataset: Any, where: str) -> gym.Env | None:
    """The dataset's env, made to read its action names and render_fps; None when it cannot be made here."""
    if dataset.env_spec is None:
        return None
    try:
        return dataset.recover_environment()
    except Exception as e:  # any env's constructor may fail here (a missing package, a display); both are optional
        logger.info("%s: could not make the env %s (%s); actions are named 'action i' and fps is %g", where,
                    dataset.env_spec.id, e, DEFAULT_FPS)
        return None


def import_minari(name: str | os.PathLike, out_dir: str | os.PathLike, size: int | None = None,
                  obs_key: str | None = None, episodes: int | None = None, overwrite: bool = False,
                  action_low: float | Sequence[float] | None = None,
                  action_high: float | Sequence[float] | None = None, progress: bool = True) -> Path:
    """Import a local Minari dataset as a worldsim dataset.

    Args:
        name: a dataset id in the local Minari root (MINARI_DATASETS_PATH, default ~/.minari/datasets), or the
            path of a dataset folder.
        out_dir: dataset folder to write (staged beside it and renamed when complete).
        size: resize frames to (size, size) with area averaging; None keeps the observations' size.
        obs_key: with dict observations, the key of the image (default: the only image in the dict).
        episodes: import only the first N episodes.
        overwrite: replace a dataset already in `out_dir`.
        action_low, action_high: bounds of Box actions where the space's are infinite (one value or one per
            component); default the space's, else the data's min/max.
        progress: show a tqdm bar (only when stderr is a terminal).

    Returns:
        The dataset folder: one episode per Minari episode, its T+1 observations as frames and its T actions.
    """
    minari = _minari()
    dataset, where = _open(minari, str(name))
    key = _image_key(dataset.observation_space, obs_key, where)
    space = dataset.action_space
    env = _env(dataset, where)
    source: dict[str, Any] = {"imported_from": where, "format": "minari", "dataset_id": dataset.id,
                              "minari_version": dataset.minari_version, "obs_key": key}
    if dataset.env_spec is not None:
        # not "env_id": a Minari observation need not be what the env renders, so eval must not assume it
        source["minari_env_id"] = dataset.env_spec.id
    if size is not None:
        source["size"] = size
    count = len(dataset) if episodes is None else min(episodes, len(dataset))
    if count == 0:
        raise DatasetError(f"{where} holds no episode; nothing to import.")
    spec, names = None, None
    if isinstance(space, gym.spaces.Discrete):
        if action_low is not None or action_high is not None:
            raise DatasetError(f"--action-low/--action-high bound Box actions; {where} has Discrete actions.")
        from ..record import action_names

        names = [f"action {int(space.start) + i}" for i in range(int(space.n))]
        if env is not None and isinstance(env.action_space, gym.spaces.Discrete):
            own = action_names(env)  # the env's vocabulary or action meanings, where it has them
            names = own if len(own) == len(names) and len(set(own)) == len(own) else names
    elif isinstance(space, gym.spaces.Box) and len(space.shape) <= 1:
        d = int(np.prod(space.shape))
        lo, hi = action_bounds(action_low, d, "action_low"), action_bounds(action_high, d, "action_high")
        low_from, high_from = "given" if lo is not None else "space", "given" if hi is not None else "space"
        lo = lo if lo is not None else np.asarray(space.low, np.float64).reshape(d)
        hi = hi if hi is not None else np.asarray(space.high, np.float64).reshape(d)
        lo, hi = (lo if np.isfinite(lo).all() else None), (hi if np.isfinite(hi).all() else None)
        # only infinite bounds need every action first (the writer checks each episode against finite ones)
        data = np.zeros((0, d)) if lo is not None and hi is not None else \
            np.concatenate([np.asarray(dataset[i].actions, np.float64).reshape(-1, d) for i in range(count)])
        spec = bounded_spec(data, lo, hi, low_from, high_from, source, where)
    else:
        raise DatasetError(f"{where}: the action space is {space}; worldsim imports Discrete actions (as phrases) and "
                           "Box actions of shape (d,) (as vectors).")
    fps = float((env.metadata.get("render_fps") if env is not None else None) or DEFAULT_FPS)
    if env is not None:
        env.close()
    side = None if size is None else (size, size)
    bar = tqdm(total=count, desc="import", unit="ep", disable=not (progress and sys.stderr.isatty()))
    try:
        with staged_output(out_dir, overwrite) as tmp:
            writer: DatasetWriter | None = None
            for i in range(count):
                ep = dataset[i]
                here = f"{where}: episode {ep.id}"
                obs = ep.observations[key] if key is not None else ep.observations
                frames = np.asarray(obs)
                if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3:
                    raise DatasetError(f"{here}: observations have shape {frames.shape} and dtype {frames.dtype}; "
                                       "expected (T+1, H, W, 3) uint8.")
                raw = np.asarray(ep.actions)
                if len(frames) != len(raw) + 1 or len(ep.rewards) != len(raw):
                    raise DatasetError(f"{here}: {len(frames)} observations, {len(raw)} actions and {len(ep.rewards)} "
                                       "rewards; expected T+1 observations for T actions and T rewards.")
                frames = frames if side is None else resize_frames(frames, side)
                if names is not None:
                    start = int(space.start)
                    actions: Any = [names[int(a) - start] for a in raw.reshape(-1)]
                else:
                    actions = raw.astype(np.float32).reshape(len(raw), -1)
                if writer is None:
                    writer = DatasetWriter(tmp, frames.shape[1], frames.shape[2], fps, names or (), source,
                                           action_spec=spec)
                try:
                    writer.add_episode(frames, actions, ep.rewards, ep.terminations)
                except DatasetError as e:
                    raise DatasetError(f"{here}: {e}") from None
                bar.update(1)
            assert writer is not None
            writer.close()
    finally:
        bar.close()
    logger.info("imported %d Minari episodes from %s", count, where)
    return Path(out_dir)
