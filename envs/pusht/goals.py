"""PushT's planning goals for `worldsim plan`: start/goal pairs from held-out episodes of its data policy (the goal
25 env steps ahead), success within 20 units and π/9 rad of the goal pose, and gym-pusht's own task (its fixed goal,
95% coverage, 300 steps)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from worldsim.actions import ActionSpec
from worldsim.errors import WorldSimError
from worldsim.plan_copy import policy_pairs
from worldsim.plan_goals import GoalPair, RealWorld

from .detector import detect_pose
from .env import (
    ARENA,
    GOAL_POSE,
    T_OUTLINE,
    PushTState,
    angle_error,
    draw,
    make_env,
    physics_step,
    restore_state,
    save_state,
    to_world,
)
from .policies import PushTPolicy

POSITION_TOLERANCE = 20.0  # env units
ANGLE_TOLERANCE = math.pi / 9  # 20°
NATIVE_COVERAGE = 0.95  # gym-pusht's success threshold
AGENT_WEIGHT = 0.1  # the agent's share of the real planner's cost (the goal image shows the agent too)
NATIVE_WEIGHT = 5.0  # the uncovered goal zone's share of the real planner's cost on gym-pusht's own task


class PushTWorld:
    """PushT's real simulator for the planners: gym-pusht's env stepped for real (`step`) or physics only
    (`advance`), its state saved and restored exactly (`PushTState`), frames drawn at `size`."""

    action_spec = ActionSpec.vector([0.0, 0.0], [ARENA, ARENA])

    def __init__(self, size: int):
        self.env = make_env(size)
        self.size = size
        self.unwrapped: Any = self.env.unwrapped
        self.begin(0)

    def begin(self, seed: int) -> None:
        self.env.reset(seed=seed)

    def info(self) -> dict[str, Any]:
        """What the data policies read, from the current state (gym-pusht's info after a step)."""
        return {"pos_agent": np.array(self.unwrapped.agent.position), "block_pose": np.array(
            [*self.unwrapped.block.position, self.unwrapped.block.angle])}

    def frame(self) -> np.ndarray:
        return draw(self.unwrapped, self.size)

    def reset_to(self, state: PushTState) -> np.ndarray:
        self.env.reset(seed=0)  # a fresh episode (its time limit counts from here)
        return self.env.restore(state)

    def load(self, state: PushTState) -> None:
        restore_state(self.unwrapped, state)

    def state(self) -> PushTState:
        return save_state(self.unwrapped)

    def step(self, action: Any) -> np.ndarray:
        frame, *_ = self.env.step(np.asarray(action, np.float64))
        return frame

    def advance(self, action: Any) -> None:
        physics_step(self.unwrapped, action)

    def close(self) -> None:
        self.env.close()


def coverage(block: Any, goal: Any = GOAL_POSE) -> float:
    """The fraction of the goal T's area the T at pose `block` covers (gym-pusht's `coverage`)."""
    import shapely.geometry as sg

    target = sg.Polygon(to_world(goal, T_OUTLINE))
    return float(sg.Polygon(to_world(block, T_OUTLINE)).intersection(target).area / target.area)


class PushTGoals:
    """PushT's `goals` hook (see `worldsim.plan_goals.Goals`). Tasks: "pairs" (the field's protocol) and "native"
    (gym-pusht's own: its fixed goal pose, success at 95% coverage within 300 steps)."""

    tasks: tuple[str, ...] = ("pairs", "native")

    def __init__(self, episode_steps: int = 200, history: int = 3):
        self.episode_steps, self.history = episode_steps, history

    def make(self, size: int) -> PushTWorld:
        return PushTWorld(size)

    def policy(self) -> PushTPolicy:
        return PushTPolicy()

    def budget(self, task: str) -> int:
        return 300 if task == "native" else 50

    def criterion(self, task: str) -> str:
        if task == "native":
            return f"the T covers more than {NATIVE_COVERAGE:.0%} of gym-pusht's goal zone"
        return (f"the T within {POSITION_TOLERANCE:g} units and {math.degrees(ANGLE_TOLERANCE):.0f}° "
                "(π/9 rad) of the goal pose")

    def pairs(self, world: RealWorld, count: int, seed: int, offset: int, task: str) -> list[GoalPair]:
        if task == "pairs":
            return policy_pairs(self, world, count, seed, offset, self.episode_steps, self.history)
        if task != "native":
            raise WorldSimError(f"PushT's planning tasks are {self.tasks}; received {task!r}.")
        out = []
        for i in range(count):  # gym-pusht's own starts (its reset), the goal drawn with the agent where it starts
            world.begin(seed + i)
            start = world.state()
            goal = PushTState(start.agent, (0.0, 0.0), GOAL_POSE, (0.0, 0.0), 0.0)
            frame = world.frame()
            world.load(goal)
            out.append(GoalPair(i, seed + i, 0, start, goal, frame[None], [], world.frame()))
        return out

    def success(self, state: PushTState, goal: PushTState, task: str) -> bool:
        if task == "native":
            return coverage(state.block, goal.block) > NATIVE_COVERAGE
        d = self.distance(state, goal)
        return d["position"] <= POSITION_TOLERANCE and d["angle_deg"] <= math.degrees(ANGLE_TOLERANCE)

    def distance(self, state: PushTState, goal: PushTState) -> dict[str, float]:
        return {"position": float(math.dist(state.block[:2], goal.block[:2])),
                "angle_deg": math.degrees(angle_error(state.block[2], goal.block[2]))}

    def cost(self, state: PushTState, goal: PushTState, task: str) -> float:
        """The pose error in the success tolerances' units, plus (pairs) the agent's distance to where the goal image
        shows it, or (native) the goal zone left uncovered: 95% coverage needs a far closer pose than 20 units."""
        pose = (math.dist(state.block[:2], goal.block[:2]) / POSITION_TOLERANCE
                + angle_error(state.block[2], goal.block[2]) / ANGLE_TOLERANCE)
        if task == "native":
            return pose + NATIVE_WEIGHT * (1.0 - coverage(state.block, goal.block))
        return pose + AGENT_WEIGHT * math.dist(state.agent, goal.agent) / POSITION_TOLERANCE

    def hold(self, state: PushTState) -> np.ndarray:
        return np.clip(np.asarray(state.agent, np.float32), 0.0, ARENA)  # a kinematic agent can overshoot the box

    def pose(self, state: PushTState) -> list[float]:
        return [round(v, 3) for v in state.to_list()]

    def frame_cost(self, frames: np.ndarray, goal_frame: np.ndarray) -> np.ndarray:
        """The detector's pose cost of each frame (B, H, W, 3) against the goal frame, in the success tolerances'
        units (a T not found costs as much as a T 3 tolerances off)."""
        goal = detect_pose(goal_frame)
        if goal["block_pos"] is None:
            return np.zeros(len(frames))
        out = np.full(len(frames), 6.0)
        for i, frame in enumerate(frames):
            found = detect_pose(frame)
            if found["block_pos"] is not None:
                out[i] = (math.dist(found["block_pos"], goal["block_pos"]) / POSITION_TOLERANCE
                          + angle_error(found["block_angle"], goal["block_angle"]) / ANGLE_TOLERANCE)
        return out
