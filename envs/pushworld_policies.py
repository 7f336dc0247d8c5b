"""PushWorld's data policies: scripted pushing, pressing into walls and corner clips, for `worldsim record`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import gymnasium as gym
import numpy as np

from worldsim.errors import WorldSimError

from .pushworld import PUSHWORLD_ACTIONS, PushWorld


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
        world = cast(PushWorld, env.unwrapped)  # this policy drives PushWorld only
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
            assert self.wall is not None
            index = approach(world, *self.wall)
        elif self.mode == "clip":
            assert self.push is not None
            index = approach(world, *self.push)
        elif self.mode == "random":
            index = self.previous if rng.random() < self.persistence else int(rng.integers(5))
        else:
            index = seek_action(world, rng)
        self.previous = index
        return PUSHWORLD_ACTIONS[index] if getattr(world, "action_mode", "discrete") == "text" else index


def seek_action(world: PushWorld, rng: np.random.Generator) -> int:
    """The next goal-seeking action index for a PushWorld: line up behind the block, push, let it slide.

    A push moves the block at least ~16 px at size 64 (its push plus its slide), so when pushing
    towards the goal would overshoot by more than the error, the block is first pushed away
    (a "back-off" push) and then brought back with a longer push. When no push can help (e.g.
    the block is against a wall it would have to leave), the action is random.
    """
    block, goal, vel = world.block, world.goal, world.block_vel
    r, h, step = world.agent_radius, world.block_half, world.agent_step
    rest = np.array([world.rest(block[0], vel[0]), world.rest(block[1], vel[1])])
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
        if (abs(goal[axis] - world.rest(block[axis], towards * push)) < abs(error[axis])
                and can_stand(block[axis] - towards * contact)):
            plans.append((axis, towards))
    for axis in axes:
        away = -1.0 if error[axis] > 0 else 1.0
        after = world.rest(block[axis], away * push)  # the return push must then be possible
        if can_stand(block[axis] - away * contact) and can_stand(after + away * contact):
            plans.append((axis, away))
    if not plans:
        return int(rng.integers(5))
    return approach(world, *plans[0])


def nearest_wall(world: PushWorld) -> tuple[int, float]:
    """(axis, sign) of the wall nearest the block: sign +1 is the right (axis 0) or bottom (axis 1) wall."""
    gaps = [(world.block[a] - world.lo, a, -1.0) for a in (0, 1)]
    gaps += [(world.hi - world.block[a], a, 1.0) for a in (0, 1)]
    _, axis, sign = min(gaps)
    return axis, sign


def approach(world: PushWorld, axis: int, sign: float, offset: float = 0.0) -> int:
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


# `worldsim record --env worldsim/PushWorld-v0 --policy NAME`: name → zero-argument factory
POLICIES: dict[str, Callable[[], PushWorldPolicy]] = {
    "pushworld": PushWorldPolicy,
    "pushworld-walls": lambda: PushWorldPolicy(press=0.1),  # a tenth of the mixed segments press into a wall
    # and a tenth more clip the block's corner
    "pushworld-contacts": lambda: PushWorldPolicy(press=0.1, clip=0.1),
}
