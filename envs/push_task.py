"""PushWorld as a planning task: the shaped objective a planner maximises, scored either in the real world
(a copy of the env per plan: the upper bound) or on the objects detected in imagined frames (the world model).

Both simulators score a plan with the same `PushTask.progress`, so they differ only in what they simulate.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .pushworld import PushWorld, _overlap, detect_objects

Pos = tuple[float, float]


def gap(a, b) -> float:
    """Distance between two (x, y) positions, px."""
    return float(np.hypot(a[0] - b[0], a[1] - b[1]))


def keep_last(found: dict, previous: dict) -> dict:
    """Detected agent and block positions, falling back to the previous ones for an object not found."""
    return {k: found[k] if found[k] is not None else previous[k] for k in ("agent_pos", "block_pos")}


@dataclass(frozen=True)
class PushTask:
    """Bring the block to the goal in a `size`-pixel PushWorld.

    glance_penalty: objective penalty per step for touching the block away from the push spot (0: off). At 2.0,
        more than a success earns, a planner does not push the block off-centre.
    push_from: which contacts count as pushes and go unpenalised. "spot": the agent within 3 px of the push spot
        (`push_spot`). "behind": the agent anywhere behind the block (on the far side from the goal along the push
        axis, at least half the contact distance) within 3 px of the block's centre line: a square push in
        imagination, where the block lags the agent by a pixel or two, is not mistaken for a glance. "either":
        within 3 px of the push spot of either axis along which the block is still off the goal: when the two
        errors are close, a push along the larger one makes it the smaller, the push spot jumps to the other axis,
        and under "spot" the pushing agent is then penalised as a glance, so a planner does not push at all.
    glance_zone: where the agent counts as touching the block. "ring": within `contact` + 2 px of the block's
        centre, a circle that reaches 3 px beyond the block's sides. "body": within a pixel of touching the block's
        square, the shape PushWorld pushes on. The ring walls off the push spot from an agent walking along the
        block's side (it passes 2 px from the side, inside the ring and not yet within 3 px of the spot), so a
        spot against a wall, which only that walk reaches, is never reached. "body" is the default: it solves more
        tasks (docs/planning.md).
    """

    size: int = 64
    glance_penalty: float = 2.0
    push_from: str = "spot"
    glance_zone: str = "body"

    def __post_init__(self):
        for name, value, allowed in (("push_from", self.push_from, ("spot", "behind", "either")),
                                     ("glance_zone", self.glance_zone, ("ring", "body"))):
            if value not in allowed:
                raise ValueError(f"{name} must be {' or '.join(map(repr, allowed))}; received {value!r}.")

    @classmethod
    def add_arguments(cls, parser) -> None:
        """The objective's options on an argparse parser, for the scripts that plan with it (`from_arguments`);
        their defaults are the dataclass's."""
        parser.add_argument("--glance-penalty", type=float, default=cls.glance_penalty,
                            help="objective penalty per step for touching the block away from the push spot (0: off)")
        parser.add_argument("--push-from", choices=("spot", "behind", "either"), default=cls.push_from,
                            help="contacts the glance penalty spares: near the push spot, anywhere behind the block "
                                 "in line, or near the push spot of either axis")
        parser.add_argument("--glance-zone", choices=("ring", "body"), default=cls.glance_zone,
                            help="where the agent counts as touching the block: a circle round it, or the block's "
                                 "own square")

    @classmethod
    def from_arguments(cls, size: int, args) -> PushTask:
        """The task that `add_arguments`'s parsed options describe, in a `size`-pixel world."""
        return cls(size, args.glance_penalty, args.push_from, args.glance_zone)

    @cached_property
    def _reach(self) -> tuple[float, float]:
        """(the block's half-size, the agent's radius plus a pixel to spare), from PushWorld's own sizes."""
        world = PushWorld(size=self.size)
        return world.block_half, world.agent_radius + self.size / 64

    @property
    def contact(self) -> float:
        """Agent radius + block half-size (8 px at 64) and a pixel to spare."""
        return 9.0 * self.size / 64

    @property
    def success(self) -> float:
        """PushWorld's success radius."""
        return 4.0 * self.size / 64

    def closeness(self, pos: Pos | None, target) -> float:
        """0 at the target, -1 at the far side of the room; a missing object counts as far."""
        return -1.0 if pos is None else -gap(pos, target) / self.size

    @staticmethod
    def push_axis(block, goal) -> tuple[int, float]:
        """(axis, direction) of the push that brings the block towards the goal: the axis with the larger error
        (0: x, 1: y) and the sign of the block's move along it."""
        error = np.subtract(goal, block)
        axis = int(np.argmax(np.abs(error)))
        return axis, float(np.sign(error[axis]))

    def push_spot(self, block, goal, axis: int | None = None) -> np.ndarray:
        """Where the agent stands to push the block towards the goal along `axis` (0: x, 1: y; None: the axis with
        the larger error)."""
        if axis is None:
            axis, direction = self.push_axis(block, goal)
        else:
            direction = float(np.sign(goal[axis] - block[axis]))
        spot = np.array(block, dtype=float)
        spot[axis] -= direction * self.contact
        return spot

    def progress(self, agent, block, goal) -> float:
        """One step's score. Block near the goal first; the agent at the spot it must push from second (it has
        to get there); a bonus for a block on the goal; a penalty for touching the block anywhere but from the
        push spot: PushWorld pushes the block on any overlap, but the model imagines pushes that clip a corner
        worst (it leaves the block in place; see scripts/contact_probe.py)."""
        if block is None:
            return -1.3
        spot = self.push_spot(block, goal)
        score = self.closeness(block, goal) + 0.3 * self.closeness(agent, spot)
        if gap(block, goal) <= self.success:
            score += 1.0
        if self.touching(agent, block) and not self.pushing(agent, block, goal):
            score -= self.glance_penalty
        return score

    def touching(self, agent, block) -> bool:
        """Whether the agent is in the block's `glance_zone`."""
        if self.glance_zone == "ring":
            return gap(agent, block) < self.contact + 2 * self.size / 64
        half, reach = self._reach
        return _overlap(np.asarray(agent, dtype=float), reach, np.asarray(block, dtype=float), half) > 0

    def pushing(self, agent, block, goal) -> bool:
        """Whether an agent touching the block touches it the way that pushes it towards the goal (`push_from`)."""
        if self.push_from == "spot":
            return gap(agent, self.push_spot(block, goal)) <= 3
        if self.push_from == "either":
            return any(abs(goal[axis] - block[axis]) > self.success / 2
                       and gap(agent, self.push_spot(block, goal, axis)) <= 3 for axis in (0, 1))
        axis, direction = self.push_axis(block, goal)
        behind = direction * (block[axis] - agent[axis])
        return behind >= self.contact / 2 and abs(block[1 - axis] - agent[1 - axis]) <= 3

    def begin(self, seed: int, session) -> tuple[PushWorld, dict, dict]:
        """A text-action PushWorld task from `seed`, with `session` reset on its first frame.
        Returns (env, reset info, the objects seen so far)."""
        env = PushWorld(render_mode="rgb_array", size=self.size, action_mode="text")
        frame, info = env.reset(seed=seed)
        session.reset(frames=frame[None])
        seen = keep_last(detect_objects(frame), {"agent_pos": info["agent_pos"], "block_pos": info["block_pos"]})
        return env, info, seen

    def near_block(self, seen: dict) -> bool:
        """Whether the agent is within a step or two of touching the block."""
        return gap(seen["agent_pos"], seen["block_pos"]) < self.contact + 6 * self.size / 64

    def real_simulator(self, env: PushWorld):
        """Score plans by playing each in a copy of the real env (a success holds for the rest of the plan)."""
        def simulate(plans: list[list[str]]) -> np.ndarray:
            totals = np.zeros(len(plans))
            for i, plan in enumerate(plans):
                world = copy.deepcopy(env)
                for t, a in enumerate(plan):
                    _, _, done, _, info = world.step(a)
                    totals[i] += self.progress(info["agent_pos"], info["block_pos"], info["goal_pos"])
                    if done:
                        totals[i] += len(plan) - 1 - t
                        break
            return totals
        return simulate

    def imagined_objective(self, goal: Pos, seen: dict):
        """`worldsim.planning` objective on imagined frames: progress of the detected objects. An object the model
        drew too faintly to detect keeps its last known place (starting from `seen`), so a plan is not scored by
        whether the model lost the block, only by where it went."""
        last: list[dict] = []

        def objective(out, t: int) -> np.ndarray:
            nonlocal last
            if t == 0:
                last = [seen] * len(out.frame)
            last = [keep_last(detect_objects(f), prev) for f, prev in zip(out.frame, last, strict=True)]
            return np.array([self.progress(d["agent_pos"], d["block_pos"], goal) for d in last])

        return objective
