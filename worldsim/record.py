"""Record any Gymnasium env into a dataset (with data policies), or import a folder of videos."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import cv2
import gymnasium as gym
import numpy as np
from tqdm import tqdm

from .config import PUSHWORLD_ACTIONS
from .dataset import DatasetWriter
from .errors import DatasetError, WorldSimError, suggest
from .video import read_actions_jsonl, read_video

logger = logging.getLogger(__name__)

DEFAULT_MAX_STEPS = 1000  # for envs without a registered time limit
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


class Policy(Protocol):
    """A data policy: `policy(env, obs, info, rng) -> action`, and `reset()` between episodes.

    A plain function `(env, obs, info, rng) -> action` works too (it gets no reset call).
    """

    def __call__(self, env: gym.Env, obs: Any, info: dict[str, Any], rng: np.random.Generator) -> Any: ...

    def reset(self) -> None: ...


class RandomPolicy:
    """Uniformly random actions drawn from `rng` (any action space)."""

    def reset(self) -> None:
        pass

    def __call__(self, env: gym.Env, obs: Any, info: dict[str, Any], rng: np.random.Generator) -> Any:
        space = env.action_space
        if isinstance(space, gym.spaces.Discrete):
            return int(space.start + rng.integers(space.n))
        space.seed(int(rng.integers(2**31)))
        return space.sample()


class PushWorldPolicy:
    """PushWorld data: per episode a mixture of segments of three behaviours.

    - "random": random actions that repeat the previous one with probability `persistence`;
    - "seek": goal-seeking pushes — walk behind the block relative to the goal and push it there;
    - "idle": short bursts of "stay";
    - "press" (only when `press` > 0, that share of mixed segments): push the block into its nearest wall and
      keep pressing it there (8–24 steps), the contact that long imagined rollouts see far more often than
      the other three behaviours produce;
    - "clip" (only when `clip` > 0, that share of mixed segments): push the block in a random direction with the
      agent 3–7 px (at 64×64) off the block's centre line, so it only clips a corner (15–39 steps). PushWorld
      pushes a block on any overlap, and planners use such pushes; seeking lines up within 1.5 px, so they are
      rare otherwise.

    Some episodes are pure seeking so that successes are common. Works in both action modes. With `press=0`
    and `clip=0` (the defaults, the `pushworld` data of the bundled model) the rng is used exactly as before
    these behaviours existed.
    """

    def __init__(self, persistence: float = 0.8, seek_only_fraction: float = 0.3, press: float = 0.0,
                 clip: float = 0.0):
        if not (0.0 <= press < 1.0 and 0.0 <= clip < 1.0 and press + clip < 1.0):
            raise WorldSimError(f"press and clip are shares of the mixed segments (pressing the block into a wall, "
                                f"clipping its corner): each in [0, 1) and together below 1; got press={press!r}, "
                                f"clip={clip!r}.")
        self.persistence = persistence
        self.seek_only_fraction = seek_only_fraction
        self.press = press
        self.clip = clip
        self.reset()

    def reset(self) -> None:
        self.mode: str | None = None
        self.left = 0
        self.previous = 4
        self.seek_only = False
        self.wall: tuple[int, float] | None = None  # (axis, sign) of the wall a "press" segment pushes towards
        self.push: tuple[int, float, float] | None = None  # a "clip" segment's (axis, sign, lateral offset px)

    def __call__(self, env: gym.Env, obs: Any, info: dict[str, Any], rng: np.random.Generator) -> Any:
        world = env.unwrapped
        if self.mode is None:
            self.seek_only = bool(rng.random() < self.seek_only_fraction)
        if self.left <= 0:
            # one uniform draw against the cumulative shares: with press=0 it picks what the 3-way draw did
            shares = [(1 - self.press - self.clip) * q for q in (0.5, 0.35, 0.15)] + [self.press, self.clip]
            mixed = str(rng.choice(["seek", "random", "idle", "press", "clip"], p=shares))
            self.mode = "seek" if self.seek_only else mixed
            low, high = {"seek": (15, 60), "random": (5, 25), "idle": (2, 8), "press": (8, 25),
                         "clip": (15, 40)}[self.mode]
            self.left = 10**9 if self.seek_only else int(rng.integers(low, high))
            if self.mode == "press":
                self.wall = nearest_wall(world)
            elif self.mode == "clip":
                offset = rng.uniform(3.0, 7.0) * world.size / 64 * rng.choice([-1.0, 1.0])
                self.push = (int(rng.integers(2)), float(rng.choice([-1.0, 1.0])), float(offset))
        self.left -= 1
        if self.mode == "idle":
            index = 4
        elif self.mode == "press":
            index = approach(world, *self.wall)
        elif self.mode == "clip":
            index = approach(world, *self.push)
        elif self.mode == "random":
            index = self.previous if rng.random() < self.persistence else int(rng.integers(5))
        else:
            index = seek_action(world, rng)
        self.previous = index
        return PUSHWORLD_ACTIONS[index] if getattr(world, "action_mode", "discrete") == "text" else index


def _rest(world: Any, x: float, v: float) -> float:
    """Where a block at `x` moving `v` px/step along one axis stops (PushWorld's friction and walls)."""
    low, high = world.lo + world.block_half, world.hi - world.block_half
    for _ in range(200):
        if v == 0.0:
            break
        x += v
        if not low <= x <= high:
            x = min(max(x, low), high)
            v *= -world.restitution
        v *= world.friction
        if abs(v) < world.stop_speed:
            v = 0.0
    return x


def seek_action(world: Any, rng: np.random.Generator) -> int:
    """The next goal-seeking action index for a PushWorld: line up behind the block, push, let it slide.

    A push moves the block at least ~16 px at size 64 (its push plus its slide), so when pushing
    towards the goal would overshoot by more than the error, the block is first pushed away
    (a "back-off" push) and then brought back with a longer push. When no push can help (e.g.
    the block is against a wall it would have to leave), the action is random.
    """
    block, goal, vel = world.block, world.goal, world.block_vel
    r, h, step = world.agent_radius, world.block_half, world.agent_step
    rest = np.array([_rest(world, block[0], vel[0]), _rest(world, block[1], vel[1])])
    error = goal - rest
    tol = 1.5 * world.size / 64
    if np.abs(error).max() <= tol:
        return 4
    push = step * world.push_gain
    contact = h + r

    def can_stand(x: float) -> bool:  # can the agent's centre be at x on an axis?
        return world.lo + r - 1e-6 <= x <= world.hi - r + 1e-6

    plans = []  # (axis, push sign); forward pushes first, then back-off pushes
    axes = [int(a) for a in np.argsort(-np.abs(error)) if abs(error[a]) > tol]
    for axis in axes:
        towards = 1.0 if error[axis] > 0 else -1.0
        if (abs(goal[axis] - _rest(world, block[axis], towards * push)) < abs(error[axis])
                and can_stand(block[axis] - towards * contact)):
            plans.append((axis, towards))
    for axis in axes:
        away = -1.0 if error[axis] > 0 else 1.0
        after = _rest(world, block[axis], away * push)  # the return push must then be possible
        if can_stand(block[axis] - away * contact) and can_stand(after + away * contact):
            plans.append((axis, away))
    if not plans:
        return int(rng.integers(5))
    return approach(world, *plans[0])


def nearest_wall(world: Any) -> tuple[int, float]:
    """(axis, sign) of the wall nearest the block: sign +1 is the right (axis 0) or bottom (axis 1) wall."""
    gaps = [(world.block[a] - world.lo, a, -1.0) for a in (0, 1)]
    gaps += [(world.hi - world.block[a], a, 1.0) for a in (0, 1)]
    _, axis, sign = min(gaps)
    return axis, sign


def approach(world: Any, axis: int, sign: float, offset: float = 0.0) -> int:
    """The action index that brings the agent behind the block and pushes it along `axis` in direction `sign`
    (walking around the block when on the wrong side); against a wall it keeps pressing. With `offset`, the agent
    lines up that many px off the block's centre line (as far as the room allows) and clips the block's side."""
    agent, block = world.agent, world.block
    r, h, step = world.agent_radius, world.block_half, world.agent_step
    contact = h + r
    other = 1 - axis
    along = (agent[axis] - block[axis]) * sign  # <= -(h + r): the agent is behind the block for this push
    across = agent[other] - block[other]
    lane = min(max(block[other] + offset, world.lo + r), world.hi - r) - block[other]  # where the agent walks
    moves = {(0, 1.0): 3, (0, -1.0): 2, (1, 1.0): 1, (1, -1.0): 0}  # (axis, sign) → action index
    if along <= -contact + 1e-3:  # behind the block
        if abs(across - lane) > step / 2 + 1e-6:
            return moves[(other, -1.0 if across > lane else 1.0)]
        return moves[(axis, sign)]  # walk up to the block and push
    if abs(across) < contact + 1.0:  # step sideways to get around the block
        side = 1.0 if across >= 0 else -1.0
        room = (world.hi - r - block[other]) if side > 0 else (block[other] - world.lo - r)
        if room < contact + 1.0:
            side = -side
        return moves[(other, side)]
    return moves[(axis, -sign)]


POLICIES: dict[str, Callable[[], Policy]] = {
    "random": RandomPolicy,
    "pushworld": PushWorldPolicy,
    "pushworld-walls": lambda: PushWorldPolicy(press=0.1),  # a tenth of the mixed segments press into a wall
    # and a tenth more clip the block's corner
    "pushworld-contacts": lambda: PushWorldPolicy(press=0.1, clip=0.1),
}


def make_policy(policy: str | Policy | None, env: gym.Env) -> tuple[Policy, str]:
    """Resolve a policy name (or None: "pushworld" for PushWorld, else "random"); returns (policy, name)."""
    if policy is None:
        policy = "pushworld" if hasattr(env.unwrapped, "block_vel") else "random"
    if isinstance(policy, str):
        if policy not in POLICIES:
            raise WorldSimError(f"unknown policy {policy!r}.{suggest(policy, POLICIES)} "
                                f"Choose one of {sorted(POLICIES)} or pass a callable.")
        return POLICIES[policy](), policy
    if not callable(policy):
        raise WorldSimError(f"policy must be a name or a callable, got {type(policy).__name__}.")
    return policy, getattr(policy, "__name__", type(policy).__name__)


def action_to_text(env: gym.Env, action: Any, action_texts: Sequence[str] | None = None) -> str:
    """Action → phrase: `action_texts[i]`, else the env's own `action_text`, else "action <i>" (Discrete)."""
    space = env.action_space
    if isinstance(action, str):
        return action
    if action_texts is not None:
        i = int(action) - int(getattr(space, "start", 0))
        if not 0 <= i < len(action_texts):
            raise WorldSimError(f"action {action!r} has no entry in action_texts "
                                f"({len(action_texts)} phrases); give one phrase per action.")
        return action_texts[i]
    own = getattr(env.unwrapped, "action_text", None)
    if callable(own):
        return str(own(action))
    if isinstance(space, gym.spaces.Discrete):
        return f"action {int(action)}"
    raise WorldSimError(f"cannot name actions of a {type(space).__name__} action space as text; pass "
                        f"action_texts=[...] for a Discrete env, or use an env with text actions.")


def _vocabulary(env: gym.Env, action_texts: Sequence[str] | None) -> list[str]:
    if action_texts is not None:
        return list(action_texts)
    known = getattr(env.unwrapped, "vocabulary", None)
    if known is not None:
        return list(known)
    space = env.action_space
    if isinstance(space, gym.spaces.Discrete):
        return [f"action {int(space.start) + i}" for i in range(int(space.n))]
    return []


def _frame(env: gym.Env) -> np.ndarray:
    frame = env.render()
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3:
        raise WorldSimError(f"env.render() returned {type(frame).__name__}; recording needs (H, W, 3) frames "
                            f"from an env made with render_mode='rgb_array'.")
    return np.ascontiguousarray(frame, dtype=np.uint8)


def record_dataset(env_id_or_env: str | gym.Env, episodes: int, out_dir: str | os.PathLike,
                   policy: str | Policy | None = None, seed: int = 0, max_steps: int | None = None,
                   action_texts: Sequence[str] | None = None, progress: bool = True,
                   overwrite: bool = False, after_end: int = 0) -> Path:
    """Run `episodes` episodes and store them as a dataset.

    Episode i is reset with seed `seed + i`; the policy draws from `np.random.default_rng(seed)`.
    Each episode stores the reset frame and one frame per step: frames (T+1, H, W, 3) uint8.

    Args:
        env_id_or_env: a registered id (made with render_mode="rgb_array"; "worldsim/..." ids are
            registered on import) or an env already made with render_mode="rgb_array".
        episodes: number of episodes.
        out_dir: dataset directory to write.
        policy: "random", "pushworld", a Policy callable, or None (pushworld for PushWorld, else random).
        seed: base seed.
        max_steps: cap on steps per episode (default: the env's time limit, else DEFAULT_MAX_STEPS).
        action_texts: phrases for Discrete actions 0..n-1, overriding the env's own names.
        progress: show a tqdm bar (only when stderr is a terminal).
        overwrite: replace a dataset already in `out_dir`.
        after_end: keep stepping this many steps after the env first terminates (within the step cap), so the
            data shows that the world goes on after, e.g., a success: a block on its goal stays there. Every
            step keeps the env's own `terminated` flag.

    Returns:
        The dataset directory.
    """
    if isinstance(env_id_or_env, str):
        if env_id_or_env.startswith("worldsim/"):
            import worldsim.envs  # noqa: F401  (registers the worldsim ids)
        env, env_id, owned = gym.make(env_id_or_env, render_mode="rgb_array"), env_id_or_env, True
    else:
        env, owned = env_id_or_env, False
        env_id = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
        if env.render_mode != "rgb_array":
            raise WorldSimError(f"env {env_id} has render_mode={env.render_mode!r}; recording needs frames, "
                                f"make it with render_mode='rgb_array'.")
    if not isinstance(after_end, int) or after_end < 0:
        raise WorldSimError(f"after_end must be an int >= 0 (steps recorded after the end), got {after_end!r}.")
    if max_steps is not None and max_steps < 1:
        raise WorldSimError(f"max_steps must be >= 1 (or None for the env's time limit), got {max_steps}.")
    pol, policy_name = make_policy(policy, env)
    limit = max_steps or (env.spec.max_episode_steps if env.spec is not None else None) or DEFAULT_MAX_STEPS
    rng = np.random.default_rng(seed)
    writer: DatasetWriter | None = None
    source = {"env_id": env_id, "policy": policy_name, "seed": seed, "max_steps": limit, "after_end": after_end}
    bar = tqdm(total=episodes, desc="record", unit="ep", disable=not (progress and sys.stderr.isatty()))
    try:
        for i in range(episodes):
            obs, info = env.reset(seed=seed + i)
            if callable(getattr(pol, "reset", None)):  # plain functions are policies too
                pol.reset()
            frames, actions, rewards, terms = [_frame(env)], [], [], []
            caption = str(info.get("caption", ""))
            ended_at = None
            for t in range(limit):
                action = pol(env, obs, info, rng)
                actions.append(action_to_text(env, action, action_texts))
                obs, reward, terminated, truncated, info = env.step(action)
                frames.append(_frame(env))
                rewards.append(float(reward))
                terms.append(bool(terminated))
                if terminated and ended_at is None:
                    ended_at = t
                if truncated or (ended_at is not None and t - ended_at >= after_end):
                    break
            if writer is None:
                h, w = frames[0].shape[:2]
                writer = DatasetWriter(out_dir, h, w, env.metadata.get("render_fps", 16),
                                       _vocabulary(env, action_texts), source, overwrite=overwrite)
            writer.add_episode(np.stack(frames), actions, rewards, terms, caption)
            bar.update(1)
    finally:
        bar.close()
        if owned:
            env.close()
    if writer is None:
        raise WorldSimError(f"record_dataset needs episodes >= 1, got {episodes}.")
    logger.info("recorded %d episodes of %s with the %r policy", episodes, env_id, policy_name)
    return writer.close()


def import_videos(video_dir: str | os.PathLike, actions_jsonl: str | os.PathLike, out_dir: str | os.PathLike,
                  size: int | None = None, fps: float | None = None, overwrite: bool = False) -> Path:
    """Import a folder of videos with a JSONL of per-video actions and captions as a dataset.

    Each JSONL line is `{"video": "name.mp4", "actions": ["move left", ...], "caption": "..."}` with
    frames-1 actions; optional "rewards" and "terminated" lists (default 0 and False). Every video
    in the folder must have a line. Episodes follow the JSONL order.

    Args:
        video_dir: folder of videos (mp4, avi, mov, mkv, webm, m4v).
        actions_jsonl: the JSONL file.
        out_dir: dataset directory to write.
        size: resize frames to (size, size); required when videos differ in size.
        fps: frames per second to record (default: the first video's).
        overwrite: replace a dataset already in `out_dir`.

    Returns:
        The dataset directory.
    """
    video_dir, jsonl = Path(video_dir), Path(actions_jsonl)
    if not video_dir.is_dir():
        raise DatasetError(f"video folder {video_dir} does not exist.")
    rows = read_actions_jsonl(jsonl)
    videos = {p.name for p in video_dir.iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS}
    listed = [row["video"] for row in rows]
    unknown = sorted(set(listed) - videos)
    if unknown:
        raise DatasetError(f"{jsonl} names video(s) {unknown} that are not in {video_dir} "
                           f"(found {sorted(videos)}).")
    unlisted = sorted(videos - set(listed))
    if unlisted:
        raise DatasetError(f"video(s) {unlisted} in {video_dir} have no line in {jsonl}; add their actions "
                           f"or move them out of the folder.")
    if not rows:
        raise DatasetError(f"{jsonl} lists no videos; nothing to import.")
    writer: DatasetWriter | None = None
    for row in rows:
        path = video_dir / row["video"]
        frames = read_video(path, None if size is None else (size, size))
        t = len(frames) - 1
        if len(row["actions"]) != t:
            raise DatasetError(f"{path} has {len(frames)} frames, so it needs {t} actions in {jsonl}, "
                               f"but its line has {len(row['actions'])}.")
        if writer is None:
            cap = cv2.VideoCapture(str(path))
            video_fps = cap.get(cv2.CAP_PROP_FPS) or 16.0
            cap.release()
            writer = DatasetWriter(out_dir, frames.shape[1], frames.shape[2], fps or video_fps, (),
                                   {"imported_from": str(video_dir), "actions_jsonl": str(jsonl)}, overwrite)
        elif frames.shape[1:3] != (writer.height, writer.width):
            raise DatasetError(f"{path} is {frames.shape[2]}×{frames.shape[1]} but earlier videos are "
                               f"{writer.width}×{writer.height}; pass size=... to resize them all.")
        writer.add_episode(frames, [str(a) for a in row["actions"]], row.get("rewards", [0.0] * t),
                           row.get("terminated", [False] * t), str(row.get("caption", "")))
    assert writer is not None
    logger.info("imported %d videos from %s", len(rows), video_dir)
    return writer.close()
