"""Record any Gymnasium env into a dataset, with data policies (a world's own, from the registry, or random)."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import cv2
import gymnasium as gym
import numpy as np
from tqdm import tqdm

from . import worlds
from .actions import ActionSpec
from .dataset import DatasetWriter
from .errors import WorldSimError, suggest
from .video import action_bounds

logger = logging.getLogger(__name__)

DEFAULT_MAX_STEPS = 1000  # for envs without a registered time limit
GENERIC_POLICIES = ("random",)  # offered for every env; a world's own policies come from its registry entry


class Policy(Protocol):
    """A data policy: `policy(env, obs, info, rng) -> action`, and `reset()` between episodes.

    A plain function `(env, obs, info, rng) -> action` works too (it gets no reset call).
    """

    def __call__(self, env: gym.Env, obs: Any, info: dict[str, Any], rng: np.random.Generator) -> Any: ...

    def reset(self) -> None: ...


class RandomPolicy:
    """Uniformly random actions drawn from `rng`: Discrete indices, Box vectors within [low, high] (default the
    space's bounds), any other space through its own sampler seeded from `rng`."""

    def __init__(self, low: Sequence[float] | None = None, high: Sequence[float] | None = None):
        self.low = None if low is None else np.asarray(low, np.float64)
        self.high = None if high is None else np.asarray(high, np.float64)

    def reset(self) -> None:
        pass

    def __call__(self, env: gym.Env, obs: Any, info: dict[str, Any], rng: np.random.Generator) -> Any:
        space = env.action_space
        if isinstance(space, gym.spaces.Discrete):
            return int(space.start + rng.integers(space.n))
        if isinstance(space, gym.spaces.Box):
            low = space.low if self.low is None else self.low
            high = space.high if self.high is None else self.high
            if not (np.isfinite(low).all() and np.isfinite(high).all()):
                raise WorldSimError(f"the random policy samples a Box uniformly but {space} is unbounded; give it "
                                    "bounds: RandomPolicy(low, high), or --action-low/--action-high.")
            return rng.uniform(low, high).astype(space.dtype)
        space.seed(int(rng.integers(2**31)))
        return space.sample()


def world_of(env: gym.Env) -> worlds.World | None:
    """The registered world this env belongs to: by its spec id, else by its class (an env made directly)."""
    if env.spec is not None and (world := worlds.find(env.spec.id)) is not None:
        return world
    cls = type(env.unwrapped)
    path = f"{cls.__module__}:{cls.__qualname__}"
    for world in worlds.worlds().values():
        spec = gym.envs.registry.get(world.env_id)
        if spec is not None and spec.entry_point == path:
            return world
    return None


def make_policy(policy: str | Policy | None, env: gym.Env, spec: ActionSpec | None = None) -> tuple[Policy, str]:
    """Resolve a policy for `env`: a name among "random" and the policies of the env's world in the registry, a
    callable, or None (the world's default policy, else "random"); returns (policy, name). A vector `spec` bounds
    the random policy's samples."""
    if policy is not None and not isinstance(policy, str):
        if not callable(policy):
            raise WorldSimError(f"policy must be a name or a callable, got {type(policy).__name__}.")
        return policy, getattr(policy, "__name__", type(policy).__name__)
    world = world_of(env)
    own = dict(world.policies) if world is not None else {}
    if policy is None:
        policy = (world.default_policy if world is not None else None) or "random"
    if policy in GENERIC_POLICIES:
        bounds = (spec.low, spec.high) if spec is not None and spec.is_vector else (None, None)
        return RandomPolicy(*bounds), policy
    if policy in own:
        return own[policy](), policy
    names = sorted({*GENERIC_POLICIES, *own})
    elsewhere = [w for w in worlds.worlds().values() if policy in w.policies and w is not world]
    where = f" (it is a policy of the world {elsewhere[0].name!r}, env {elsewhere[0].env_id})" if elsewhere else ""
    env_name = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
    raise WorldSimError(f"unknown policy {policy!r} for {env_name}{where}.{suggest(policy, names)} Choose one of "
                        f"{names}, or pass a callable; a world offers more by registering them "
                        "(worldsim.worlds.World(policies=...)).")


def action_names(env: gym.Env, action_texts: Sequence[str] | None = None) -> list[str]:
    """Phrases of the env's actions: `action_texts`, else the env's own `vocabulary`, else (Discrete) its action
    meanings (`get_action_meanings()`, as Atari envs have), else "action 0", "action 1", …; [] when none apply."""
    if action_texts is not None:
        return list(action_texts)
    unwrapped = env.unwrapped
    known = getattr(unwrapped, "vocabulary", None)
    if known is not None:
        return list(known)
    space = env.action_space
    if not isinstance(space, gym.spaces.Discrete):
        return []
    meanings = getattr(unwrapped, "get_action_meanings", None)
    if callable(meanings):
        names = [str(m) for m in meanings()]
        if len(names) == int(space.n) and len(set(names)) == len(names):
            return names
    return [f"action {int(space.start) + i}" for i in range(int(space.n))]


def action_to_text(env: gym.Env, action: Any, action_texts: Sequence[str] | None = None) -> str:
    """Action → phrase: `action_texts[i]`, else the env's own `action_text`, else its Discrete action names."""
    space = env.action_space
    if isinstance(action, str):
        return action
    if action_texts is None:
        own = getattr(env.unwrapped, "action_text", None)
        if callable(own):
            return str(own(action))
        if not isinstance(space, gym.spaces.Discrete):
            raise WorldSimError(f"cannot name actions of a {type(space).__name__} action space as text; pass "
                                "action_texts=[...] for a Discrete env, or use an env with text actions.")
        action_texts = action_names(env)
    i = int(action) - int(getattr(space, "start", 0))
    if not 0 <= i < len(action_texts):
        raise WorldSimError(f"action {action!r} has no entry in the action names ({len(action_texts)} phrases); "
                            "give one phrase per action.")
    return action_texts[i]


def action_spec_for(env: gym.Env, action_texts: Sequence[str] | None = None,
                    low: float | Sequence[float] | None = None,
                    high: float | Sequence[float] | None = None) -> ActionSpec | None:
    """The action spec a recording of `env` gets: vector for a 1-D Box (bounds from the space, or `low`/`high`
    where given), text for a Discrete space or an env with its own phrases; None when an env names its actions
    one by one (`action_text`) without a vocabulary. Other spaces raise WorldSimError."""
    space = env.action_space
    name = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
    if isinstance(space, gym.spaces.Box):
        if len(space.shape) != 1:
            raise WorldSimError(f"{name} has a Box action space of shape {space.shape}; worldsim records vector "
                                "actions of shape (d,). Fix: flatten the actions with a wrapper "
                                "(gymnasium.wrappers.FlattenObservation works on observations; write a small "
                                "ActionWrapper).")
        d = int(space.shape[0])
        lo = action_bounds(low, d, "action_low")
        hi = action_bounds(high, d, "action_high")
        lo = np.asarray(space.low, np.float64) if lo is None else lo
        hi = np.asarray(space.high, np.float64) if hi is None else hi
        if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
            raise WorldSimError(f"{name}'s action space {space} has infinite bounds (low {lo.tolist()}, high "
                                f"{hi.tolist()}); a vector action spec needs finite ones. Fix: pass --action-low "
                                "and --action-high (action_low=, action_high=) with the range the actions use.")
        if not (lo < hi).all():
            raise WorldSimError(f"action bounds need low < high in every component; received low {lo.tolist()}, "
                                f"high {hi.tolist()}.")
        return ActionSpec.vector(lo.tolist(), hi.tolist())
    if low is not None or high is not None:
        raise WorldSimError(f"action_low/action_high (--action-low/--action-high) bound Box actions; {name} has a "
                            f"{type(space).__name__} action space.")
    names = action_names(env, action_texts)
    if names:
        return ActionSpec.text(names)
    if callable(getattr(env.unwrapped, "action_text", None)):
        return None
    raise WorldSimError(f"{name} has a {type(space).__name__} action space; worldsim records Discrete actions (as "
                        "text) and 1-D Box actions (as vectors). Fix: wrap the env so its actions are one of "
                        "these, or give the env an `action_text(action) -> str` method.")


def _frame(env: gym.Env, size: int | None) -> np.ndarray:
    frame = env.render()
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3:
        raise WorldSimError(f"env.render() returned {type(frame).__name__}; recording needs (H, W, 3) frames "
                            f"from an env made with render_mode='rgb_array'.")
    frame = np.ascontiguousarray(frame, dtype=np.uint8)
    if size is not None and frame.shape[:2] != (size, size):
        frame = cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)
    return frame


def _make_env(env_id: str) -> gym.Env:
    """A registered id made with render_mode="rgb_array", through its world's `make_env` when it has one."""
    world = worlds.find(env_id)  # loads the world plug-ins, which register their Gymnasium ids
    try:
        if world is not None and world.env_id == env_id and world.make_env is not None:
            return world.make_env()
        return gym.make(env_id, render_mode="rgb_array")
    except gym.error.Error as e:
        raise WorldSimError(f"could not make the env {env_id!r}: {e} Fix: pass a registered Gymnasium id (or "
                            "'module:Id' to import its module first) of an env that renders rgb_array.") from e


def record_dataset(env_id_or_env: str | gym.Env, episodes: int, out_dir: str | os.PathLike,
                   policy: str | Policy | None = None, seed: int = 0, max_steps: int | None = None,
                   action_texts: Sequence[str] | None = None, progress: bool = True,
                   overwrite: bool = False, after_end: int = 0, size: int | None = None,
                   action_low: float | Sequence[float] | None = None,
                   action_high: float | Sequence[float] | None = None) -> Path:
    """Run `episodes` episodes and store them as a dataset.

    Episode i is reset with seed `seed + i`; the policy draws from `np.random.default_rng(seed)`.
    Each episode stores the reset frame and one frame per step: frames (T+1, H, W, 3) uint8.
    Discrete actions are stored as phrases, 1-D Box actions as vectors (T, d) float32 (see `action_spec_for`).

    Args:
        env_id_or_env: a registered id (made with render_mode="rgb_array"; the ids of registered worlds need no
            import) or an env already made with render_mode="rgb_array".
        episodes: number of episodes.
        out_dir: dataset directory to write.
        policy: "random", a policy of the env's world (e.g. "pushworld"), a Policy callable, or None (the world's
            default policy, else random).
        seed: base seed.
        max_steps: cap on steps per episode (default: the env's time limit, else DEFAULT_MAX_STEPS).
        action_texts: phrases for Discrete actions 0..n-1, overriding the env's own names.
        progress: show a tqdm bar (only when stderr is a terminal).
        overwrite: replace a dataset already in `out_dir`.
        after_end: keep stepping this many steps after the env first terminates (within the step cap), so the
            data shows that the world goes on after, e.g., a success: a block on its goal stays there. Every
            step keeps the env's own `terminated` flag.
        size: resize every render to size×size (area averaging); None keeps the env's frame size.
        action_low, action_high: bounds of Box actions (one value, or one per component) where the space's own
            are infinite or too wide.

    Returns:
        The dataset directory.
    """
    if not isinstance(after_end, int) or after_end < 0:
        raise WorldSimError(f"after_end must be an int >= 0 (steps recorded after the end), got {after_end!r}.")
    if max_steps is not None and max_steps < 1:
        raise WorldSimError(f"max_steps must be >= 1 (or None for the env's time limit), got {max_steps}.")
    if size is not None and size < 1:
        raise WorldSimError(f"size must be >= 1 (frame side in pixels) or None, got {size}.")
    if isinstance(env_id_or_env, str):
        env, env_id, owned = _make_env(env_id_or_env), env_id_or_env, True
    else:
        env, owned = env_id_or_env, False
        env_id = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
        if env.render_mode != "rgb_array":
            raise WorldSimError(f"env {env_id} has render_mode={env.render_mode!r}; recording needs frames, "
                                f"make it with render_mode='rgb_array'.")
    try:
        return _record(env, env_id, episodes, out_dir, policy, seed, max_steps, action_texts, progress, overwrite,
                       after_end, size, action_low, action_high)
    finally:
        if owned:
            env.close()


def _record(env: gym.Env, env_id: str, episodes: int, out_dir: str | os.PathLike, policy: str | Policy | None,
            seed: int, max_steps: int | None, action_texts: Sequence[str] | None, progress: bool, overwrite: bool,
            after_end: int, size: int | None, action_low: Any, action_high: Any) -> Path:
    if episodes < 1:
        raise WorldSimError(f"record_dataset needs episodes >= 1, got {episodes}.")
    spec = action_spec_for(env, action_texts, action_low, action_high)
    vector = spec is not None and spec.is_vector
    pol, policy_name = make_policy(policy, env, spec)
    limit = max_steps or (env.spec.max_episode_steps if env.spec is not None else None) or DEFAULT_MAX_STEPS
    rng = np.random.default_rng(seed)
    writer: DatasetWriter | None = None
    source = {"env_id": env_id, "policy": policy_name, "seed": seed, "max_steps": limit, "after_end": after_end}
    if size is not None:
        source["size"] = size
    bar = tqdm(total=episodes, desc="record", unit="ep", disable=not (progress and sys.stderr.isatty()))
    try:
        for i in range(episodes):
            obs, info = env.reset(seed=seed + i)
            if callable(getattr(pol, "reset", None)):  # plain functions are policies too
                pol.reset()
            frames, actions, rewards, terms = [_frame(env, size)], [], [], []
            caption = str(info.get("caption", ""))
            ended_at = None
            for t in range(limit):
                action = pol(env, obs, info, rng)
                actions.append(np.asarray(action, np.float32).reshape(-1) if vector
                               else action_to_text(env, action, action_texts))
                obs, reward, terminated, truncated, info = env.step(action)
                frames.append(_frame(env, size))
                rewards.append(float(reward))
                terms.append(bool(terminated))
                if terminated and ended_at is None:
                    ended_at = t
                if truncated or (ended_at is not None and t - ended_at >= after_end):
                    break
            if writer is None:
                h, w = frames[0].shape[:2]
                fps = env.metadata.get("render_fps") or 16
                writer = DatasetWriter(out_dir, h, w, fps, (), source, overwrite=overwrite, action_spec=spec)
            if spec is not None and spec.is_vector:
                stored: Any = np.stack(actions) if actions else np.zeros((0, spec.dim), np.float32)
            else:
                stored = actions
            writer.add_episode(np.stack(frames), stored, rewards, terms, caption)
            bar.update(1)
    finally:
        bar.close()
    assert writer is not None
    logger.info("recorded %d episodes of %s with the %r policy", episodes, env_id, policy_name)
    return writer.close()

