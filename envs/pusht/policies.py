"""PushT's data policies for `worldsim record`: smooth random targets, contact-seeking pushes on random sides and
offsets of the T (most of them turn it), presses into the walls, and pauses.

A policy reads only `info` (gym-pusht's `pos_agent` and `block_pose`) and draws every choice from the recorder's rng;
its action is where the agent should go, a float32 (2,) in [0, 512]².
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from worldsim.errors import WorldSimError

from .env import AGENT_RADIUS, ARENA, T_OUTLINE, outline_edges, to_world

MARGIN = 20.0  # targets stay this far inside the arena's edge: the agent (radius 15) just reaches a wall
WALL, WALL_GAP = 7.0, 4.0  # the walls' inner faces lie 7 units inside the arena's edge; a T this close touches one
AROUND = 110.0  # radius of the circle round the T's centre the agent walks on to reach its far side
T_CENTRE = np.array([[0.0, 45.0]])  # the T's centre of gravity in its own frame (gym-pusht's)
MODES = ("push", "smooth", "wall", "pause")


def _toward(here: np.ndarray, there: np.ndarray, speed: float) -> np.ndarray:
    """A point at most `speed` from `here` on the way to `there`."""
    gap = there - here
    dist = float(np.linalg.norm(gap))
    return there.copy() if dist <= speed else here + gap * (speed / dist)


def _clip(target: np.ndarray, margin: float = MARGIN) -> np.ndarray:
    return np.clip(target, margin, ARENA - margin)


def _spare_the_walls(target: np.ndarray, agent: np.ndarray, block: np.ndarray) -> np.ndarray:
    """`target` kept from driving the agent further towards a wall the T touches while the agent is near the T (a
    kinematic agent would squeeze the T through the wall)."""
    corners = to_world(block, T_OUTLINE)
    low, high = corners.min(0), corners.max(0)
    if np.any(agent < low - AGENT_RADIUS - 12) or np.any(agent > high + AGENT_RADIUS + 12):
        return target
    target = target.copy()
    for k in (0, 1):
        if low[k] < WALL + WALL_GAP:
            target[k] = max(target[k], agent[k])
        if high[k] > ARENA - WALL - WALL_GAP:
            target[k] = min(target[k], agent[k])
    return target


def _against_wall(block: np.ndarray, direction: np.ndarray) -> bool:
    """Whether the T already touches a wall (within WALL_GAP) on the side `direction` pushes it towards. The agent is
    kinematic: pushing on would drive it through the T and squeeze the T through the wall (gym-pusht lets it out of
    the arena), so a press holds the agent where it is instead."""
    corners = to_world(block, T_OUTLINE)
    low, high = corners.min(0), corners.max(0)
    return any((direction[k] < -0.3 and low[k] < WALL + WALL_GAP) or (direction[k] > 0.3 and high[k] > ARENA - WALL
                                                                       - WALL_GAP) for k in (0, 1))


class PushTPolicy:
    """Segments of four behaviours, drawn with probabilities `mix` (push, smooth, wall, pause):

    - "push": pick an edge of the T (by length) and a point on it away from the corners, walk round the T to just
      outside that point (on a circle round the T when the agent is on the wrong side), then push through it along
      the edge's inward normal (±20°) for 4–16 steps. Most points are off the T's centre line, so most pushes turn it.
    - "smooth": a target gliding to random waypoints at a random speed (the agent wanders, and sometimes bumps the T).
    - "wall": press into the nearest wall: push the T towards it from the opposite side, or press the agent itself
      against it, holding the press for a few steps.
    - "pause": hold the agent where it is for 2–6 steps.
    """

    def __init__(self, mix: tuple[float, float, float, float] = (0.6, 0.2, 0.12, 0.08)):
        if len(mix) != len(MODES) or min(mix) < 0 or not math.isclose(sum(mix), 1.0):
            raise WorldSimError(f"mix gives the shares of the behaviours {MODES}: four values ≥ 0 summing to 1; "
                                f"received {mix!r}.")
        self.mix = np.asarray(mix, float)
        self.reset()

    def reset(self) -> None:
        self.mode: str | None = None
        self.left = 0  # steps left in this segment
        self.route: list[np.ndarray] = []  # waypoints before the push starts
        self.push: tuple[np.ndarray, np.ndarray, float] | None = None  # (start, direction, speed)
        self.target: np.ndarray | None = None
        self.goal: np.ndarray | None = None  # a smooth segment's waypoint
        self.speed = 0.0

    def __call__(self, env: Any, obs: Any, info: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
        agent = np.asarray(info["pos_agent"], float)
        block = np.asarray(info["block_pose"], float)
        if self.target is None:
            self.target = agent.copy()
        if self.left <= 0 and not self.route:
            self._begin(str(rng.choice(MODES, p=self.mix)), agent, block, rng)
        if self.route:  # walking to where a push starts
            self.target = _toward(self.target, self.route[0], self.speed)
            if np.linalg.norm(agent - self.route[0]) < 8 or np.linalg.norm(self.target - self.route[0]) < 1e-6 \
                    and np.linalg.norm(agent - self.route[0]) < 20:
                self.route.pop(0)
            if not self.route and self.push is not None:
                self.target = self.push[0].copy()
        else:
            self.left -= 1
            if self.mode in ("push", "wall") and self.push is not None:
                start, direction, speed = self.push
                if not _against_wall(block, direction):
                    self.target = self.target + direction * speed
            elif self.mode == "smooth":
                assert self.goal is not None
                self.target = _toward(self.target, self.goal, self.speed)
                if np.linalg.norm(self.target - self.goal) < 1e-6:
                    self.goal = _clip(rng.uniform(0, ARENA, 2))
        self.target = _clip(_spare_the_walls(self.target, agent, block))
        return self.target.astype(np.float32)

    def _begin(self, mode: str, agent: np.ndarray, block: np.ndarray, rng: np.random.Generator) -> None:
        self.mode, self.push, self.route = mode, None, []
        self.target = agent.copy()
        if mode == "pause":
            self.left = int(rng.integers(2, 7))
        elif mode == "smooth":
            self.left = int(rng.integers(10, 40))
            self.speed = float(rng.uniform(6, 30))
            self.goal = _clip(rng.uniform(0, ARENA, 2))
        elif mode == "push":
            starts, ends, normals = outline_edges()
            lengths = np.linalg.norm(ends - starts, axis=1)
            i = int(rng.choice(len(lengths), p=lengths / lengths.sum()))
            spot = starts[i] + rng.uniform(0.15, 0.85) * (ends[i] - starts[i])
            turn = math.radians(rng.uniform(-20, 20))
            inward = -normals[i] @ np.array([[math.cos(turn), math.sin(turn)], [-math.sin(turn), math.cos(turn)]])
            self._plan_push(block, spot, normals[i], inward, float(rng.uniform(8, 20)), agent, rng)
            self.left = int(rng.integers(4, 17))
        else:  # wall
            centre = to_world(block, T_CENTRE)[0]
            distances = np.array([centre[0], centre[1], ARENA - centre[0], ARENA - centre[1]])
            side = int(np.argmin(distances))
            toward = np.array([(-1.0, 0.0), (0.0, -1.0), (1.0, 0.0), (0.0, 1.0)][side])
            if rng.random() < 0.6:  # push the T into that wall from the far side
                starts, ends, normals = outline_edges()
                world_normals = to_world((0, 0, block[2]), normals)
                i = int(np.argmax(world_normals @ -toward))  # the edge facing away from the wall
                spot = starts[i] + rng.uniform(0.25, 0.75) * (ends[i] - starts[i])
                self._plan_push(block, spot, normals[i], toward, float(rng.uniform(8, 16)), agent, rng,
                                world_direction=True)
                self.left = int(rng.integers(10, 25))
            else:  # press the agent itself against the wall
                self.push = (agent.copy(), toward, float(rng.uniform(10, 25)))
                self.left = int(rng.integers(6, 16))

    def _plan_push(self, block: np.ndarray, spot: np.ndarray, normal: np.ndarray, direction: np.ndarray,
                   speed: float, agent: np.ndarray, rng: np.random.Generator, world_direction: bool = False) -> None:
        """Route to just outside `spot` (T frame) along `normal`, then push along `direction` (T frame unless
        `world_direction`)."""
        contact = to_world(block, spot[None])[0]
        out = to_world((0, 0, block[2]), normal[None])[0]
        start = contact + out * (AGENT_RADIUS + 6)
        push_dir = direction if world_direction else to_world((0, 0, block[2]), direction[None])[0]
        self.speed = float(rng.uniform(20, 40))
        self.route = self._around(block, agent, start) + [start]
        self.push = (_clip(start), push_dir / np.linalg.norm(push_dir), speed)

    @staticmethod
    def _around(block: np.ndarray, agent: np.ndarray, start: np.ndarray) -> list[np.ndarray]:
        """Waypoints on a circle round the T's centre from the agent's side to `start`'s, 45° apart, when the
        straight way would cross the T."""
        centre = to_world(block, T_CENTRE)[0]
        a, b = agent - centre, start - centre
        # the straight path clears the T when it passes the centre further than the T's half-width
        seg = start - agent
        t = np.clip(-(a @ seg) / max(seg @ seg, 1e-9), 0, 1)
        if np.linalg.norm(a + t * seg) > 75:
            return []
        ang_a, ang_b = math.atan2(a[1], a[0]), math.atan2(b[1], b[0])
        sweep = (ang_b - ang_a + math.pi) % (2 * math.pi) - math.pi
        n = max(1, int(abs(sweep) // (math.pi / 4)))
        points = [centre + AROUND * np.array([math.cos(ang_a + sweep * k / n), math.sin(ang_a + sweep * k / n)])
                  for k in range(n + 1)]
        return [_clip(p) for p in points]


def only(mode: str):
    """A factory of a policy doing only `mode` (with pauses between pushes for "push")."""
    mix = {"push": (0.9, 0.0, 0.0, 0.1), "smooth": (0.0, 1.0, 0.0, 0.0), "wall": (0.0, 0.0, 1.0, 0.0)}[mode]
    return lambda: PushTPolicy(mix)


POLICIES = {"pusht": PushTPolicy, "pusht-push": only("push"), "pusht-smooth": only("smooth"),
            "pusht-walls": only("wall")}
