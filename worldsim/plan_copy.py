"""Planning goals for any world whose env can be deep-copied: `CopyGoals` (success when one object is within a
tolerance of its goal position), `policy_pairs` (start/goal pairs from held-out episodes of a data policy) and the
real simulator over a copyable env. PushWorld's `goals` hook is a `CopyGoals`; PushT's goals use `policy_pairs`."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .plan_goals import GoalPair, Goals, RealWorld


class CopyGoals:
    """Goals for a world whose env deep-copies and exposes object positions (`positions(env) -> {name: (x, y)}`):
    success when `target`'s position is within `tolerance` of its goal position. Pairs come from held-out episodes of
    the world's data `policy`; frames are the env's renders area-resized to the model's size."""

    tasks: tuple[str, ...] = ("pairs",)

    def __init__(self, make_env: Callable[[], Any], positions: Callable[[Any], dict[str, Sequence[float]]],
                 target: str, tolerance: float, hold: Any, policy: Callable[[], Any], budget: int = 50,
                 agent: str | None = None, episode_steps: int = 200, history: int = 3):
        self.make_env, self.positions, self.target, self.tolerance = make_env, positions, target, tolerance
        self.policy, self.agent, self.episode_steps, self.history = policy, agent, episode_steps, history
        self._hold, self._budget = hold, budget

    def make(self, size: int) -> _CopyWorld:
        return _CopyWorld(self.make_env(), size)

    def budget(self, task: str) -> int:
        return self._budget

    def criterion(self, task: str) -> str:
        return f"{self.target} within {self.tolerance:g} px of its goal position"

    def pose(self, state: Any) -> list[float]:
        return [float(v) for p in self.positions(state).values() for v in p]

    def _gap(self, state: Any, goal: Any, key: str) -> float:
        a, b = self.positions(state)[key], self.positions(goal)[key]
        return float(math.hypot(a[0] - b[0], a[1] - b[1]))

    def distance(self, state: Any, goal: Any) -> dict[str, float]:
        return {"position": self._gap(state, goal, self.target)}

    def success(self, state: Any, goal: Any, task: str) -> bool:
        return self._gap(state, goal, self.target) <= self.tolerance

    def cost(self, state: Any, goal: Any, task: str) -> float:
        extra = 0.1 * self._gap(state, goal, self.agent) if self.agent else 0.0
        return (self._gap(state, goal, self.target) + extra) / self.tolerance

    def hold(self, state: Any) -> Any:
        return self._hold

    def frame_cost(self, frames: np.ndarray, goal_frame: np.ndarray) -> np.ndarray:
        return np.zeros(len(frames))

    def pairs(self, world: RealWorld, count: int, seed: int, offset: int, task: str) -> list[GoalPair]:
        return policy_pairs(self, world, count, seed, offset, self.episode_steps, self.history)


def policy_pairs(goals: Goals, world: Any, count: int, seed: int, offset: int, episode_steps: int,
                 history: int) -> list[GoalPair]:
    """`count` pairs from held-out episodes (world seeds `seed`, `seed + 1`, …) of the goals' data policy
    (`goals.policy`, fed `world.info()`): in each, a start drawn among the steps whose state `offset` steps later
    does not already meet the goal (a pair solved at the start would be a free success); episodes with none give
    no pair."""
    out: list[GoalPair] = []
    episode = seed
    while len(out) < count:
        if episode - seed > 20 * count + 20:
            from .errors import WorldSimError

            raise WorldSimError(f"only {len(out)} of {count} goal pairs found in {episode - seed} episodes: the data "
                                f"policy rarely moves the target within {offset} steps. Use a larger offset.")
        rng = np.random.default_rng(episode)
        world.begin(episode)
        policy = goals.policy()
        states, actions = [world.state()], []
        for _ in range(episode_steps):
            action = policy(world.env, None, world.info(), rng)
            world.advance(action)
            states.append(world.state())
            actions.append(action)
        fine = [t for t in range(history, len(states) - offset)
                if not goals.success(states[t], states[t + offset], "pairs")]
        if fine:
            t = int(rng.choice(fine))
            frames = []
            for s in states[t - history:t + 1]:
                world.load(s)
                frames.append(world.frame())
            world.load(states[t + offset])
            out.append(GoalPair(len(out), episode, t, states[t], states[t + offset], np.stack(frames),
                                actions[t - history:t], world.frame()))
        episode += 1
    return out


class _CopyWorld:
    """A RealWorld over any env that deep-copies (its state is a copy of the whole env)."""

    def __init__(self, env: Any, size: int):
        from .record import action_spec_for

        self.env, self.size = env, size
        self.action_spec = action_spec_for(env)
        self._info: dict[str, Any] = {}

    def begin(self, seed: int) -> None:
        _, self._info = self.env.reset(seed=seed)

    def info(self) -> dict[str, Any]:
        return self._info

    def frame(self) -> np.ndarray:
        import cv2

        frame = self.env.render()
        if frame.shape[:2] != (self.size, self.size):
            frame = cv2.resize(frame, (self.size, self.size), interpolation=cv2.INTER_AREA)
        return np.ascontiguousarray(frame, np.uint8)

    def reset_to(self, state: Any) -> np.ndarray:
        self.load(state)
        return self.frame()

    def load(self, state: Any) -> None:
        self.env = copy.deepcopy(state)

    def state(self) -> Any:
        return copy.deepcopy(self.env)

    def step(self, action: Any) -> np.ndarray:
        self.advance(action)
        return self.frame()

    def advance(self, action: Any) -> None:
        *_, self._info = self.env.step(action)

    def close(self) -> None:
        self.env.close()
