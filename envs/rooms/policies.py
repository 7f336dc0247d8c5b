"""Rooms' data policies: persistent walks, full turns in place, bumps into walls and out-and-back paths.

Every behaviour yields commands (yaw rate, forward, strafe) in [-1, 1]; a policy hands them to the env in its own
action space: the nearest phrase (text), its index (discrete), or the vector itself. In text and discrete modes the
behaviours only yield the seven phrases' unit commands; in vector mode they vary magnitudes and mix components.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import gymnasium as gym
import numpy as np

from worldsim.errors import WorldSimError

from .env import PHRASE_VECTORS, RADIUS, ROOMS_ACTIONS, Rooms, move

BEHAVIOURS = ("walk", "turn", "bump", "revisit", "idle")
STAY = np.zeros(3)


def phrase_of(command: np.ndarray) -> str:
    """The phrase nearest a command: its largest component's sign ("stay" when every |component| < 0.25)."""
    i = int(np.argmax(np.abs(command)))
    if abs(command[i]) < 0.25:
        return "stay"
    key = [("turn right", "turn left"), ("move back", "move forward"), ("strafe left", "strafe right")][i]
    return key[int(command[i] > 0)]


def env_action(world: Rooms, command: np.ndarray) -> Any:
    """A command as an action of the world's space: float32 (3,) vector, phrase, or Discrete index."""
    if world.action_mode == "vector":
        return np.clip(command, -1, 1).astype(np.float32)
    phrase = phrase_of(command)
    return phrase if world.action_mode == "text" else ROOMS_ACTIONS.index(phrase)


def turn_steps(magnitude: float, world: Rooms) -> int:
    """Steps of yaw rate `magnitude` that make a whole turn (exact for 1, 3/4 and 1/2 at 15° a step)."""
    return max(1, round(2 * math.pi / (magnitude * world.max_turn)))


def out_and_back(world: Rooms, steps: int, rng: np.random.Generator, vector: bool,
                 tries: int = 30) -> list[np.ndarray]:
    """A path of `steps` commands (even) from the current pose that returns to it: `steps/2` commands out (a turn,
    then moves), then the negated commands in reverse order. Drawn until the way out touches no wall (then the way
    back is the exact inverse); after `tries` draws, a turn in place there and back."""
    half = steps // 2
    for _ in range(tries):
        out: list[np.ndarray] = []
        turning = int(rng.integers(0, half + 1))
        sign = float(rng.choice([-1.0, 1.0]))
        for _ in range(turning):
            out.append(np.array([sign * (rng.uniform(0.5, 1.0) if vector else 1.0), 0.0, 0.0]))
        while len(out) < half:
            phrase = str(rng.choice(["move forward", "move forward", "strafe left", "strafe right", "move back"]))
            command = np.array(PHRASE_VECTORS[phrase])
            if vector:
                command = command * rng.uniform(0.4, 1.0) + np.array([rng.uniform(-0.3, 0.3), 0.0, 0.0])
            out.extend([command] * min(int(rng.integers(1, 5)), half - len(out)))
        pose, clear = world.pose, True
        for command in out:
            pose, bump = move(world.layout, pose, command, world.max_turn, world.max_speed)
            clear = clear and not bump
        if clear:
            return out + [-c for c in reversed(out)]
    sign = float(rng.choice([-1.0, 1.0]))
    return [np.array([sign, 0.0, 0.0])] * half + [np.array([-sign, 0.0, 0.0])] * half


class RoomsPolicy:
    """Rooms data: per episode a sequence of segments, each one behaviour drawn with the weights in `mix`:

    - "walk": persistent walking, mostly forward, turning away before a wall (vector mode: curving, strafing);
    - "turn": a full turn in place (24 steps at 15°; vector mode also 32 or 48 slower steps), then a short walk;
    - "bump": turn towards the nearest wall, walk into it and keep pressing 2–8 steps, then turn away;
    - "revisit": an out-and-back path of 8, 16 or 32 steps that returns to the pose it left (`out_and_back`);
    - "idle": 1–6 steps of "stay" (the view must not change).

    Works in the text, discrete and vector action modes; every random choice comes from the `rng` it is called with.
    """

    def __init__(self, mix: dict[str, float] | None = None):
        mix = dict(mix or {"walk": 0.4, "turn": 0.2, "bump": 0.15, "revisit": 0.2, "idle": 0.05})
        unknown = sorted(set(mix) - set(BEHAVIOURS))
        if unknown or not mix or min(mix.values()) < 0 or sum(mix.values()) <= 0:
            raise WorldSimError(f"RoomsPolicy mix {mix!r}: give non-negative weights, not all 0, for behaviours of "
                                f"{list(BEHAVIOURS)} (unknown: {unknown}).")
        total = sum(mix.values())
        self.names = list(mix)
        self.weights = [v / total for v in mix.values()]
        self.reset()

    def reset(self) -> None:
        self.plan: Iterator[np.ndarray] | None = None
        self.world: Rooms | None = None
        self.rng = np.random.default_rng(0)

    def __call__(self, env: gym.Env, obs: Any, info: dict[str, Any], rng: np.random.Generator) -> Any:
        world = env.unwrapped
        if not isinstance(world, Rooms):
            raise WorldSimError(f"RoomsPolicy drives worldsim/Rooms-v0; received {type(world).__name__}.")
        self.world, self.rng = world, rng
        for _ in range(3):  # a behaviour may have nothing to do (a plan of length 0)
            if self.plan is None:
                name = self.names[int(rng.choice(len(self.names), p=self.weights))]
                self.plan = getattr(self, f"_{name}")()
            command = next(self.plan, None)
            if command is not None:
                return env_action(world, command)
            self.plan = None
        return env_action(world, STAY)

    # -- behaviours: generators reading the world as it moves ------------------------------------------------------
    @property
    def _vector(self) -> bool:
        return self.world is not None and self.world.action_mode == "vector"

    def _walk(self, steps: int | None = None) -> Iterator[np.ndarray]:
        world, rng = self.world, self.rng
        assert world is not None
        steps = int(rng.integers(8, 40)) if steps is None else steps
        curve, strafe = 0.0, 0.0
        if self._vector:
            curve, strafe = rng.uniform(-0.3, 0.3), rng.uniform(-0.4, 0.4) if rng.random() < 0.3 else 0.0
        left, sign = 0, 1.0
        for _ in range(steps):
            ahead = world.clearance([0.0])[0]
            if left == 0 and ahead < RADIUS + 2 * world.max_speed:  # about to meet a wall: turn to the open side
                sides = world.clearance([math.pi / 3, -math.pi / 3])
                sign = 1.0 if sides[0] >= sides[1] else -1.0
                left = int(rng.integers(2, 9))
            if left > 0:
                left -= 1
                yield np.array([sign * (rng.uniform(0.6, 1.0) if self._vector else 1.0), 0.0, 0.0])
            elif rng.random() < 0.1:  # a glance aside
                yield np.array([float(rng.choice([-1.0, 1.0])), 0.0, 0.0])
            elif self._vector:
                yield np.array([curve + rng.normal(0, 0.05), rng.uniform(0.5, 1.0), strafe])
            else:
                yield np.array(PHRASE_VECTORS["move forward"])

    def _turn(self) -> Iterator[np.ndarray]:
        world, rng = self.world, self.rng
        assert world is not None
        magnitude = float(rng.choice([1.0, 0.75, 0.5])) if self._vector else 1.0
        sign = float(rng.choice([-1.0, 1.0]))
        for _ in range(turn_steps(magnitude, world)):
            yield np.array([sign * magnitude, 0.0, 0.0])
        yield from self._walk(int(rng.integers(3, 12)))

    def _bump(self) -> Iterator[np.ndarray]:
        world, rng = self.world, self.rng
        assert world is not None
        angles = np.linspace(-math.pi, math.pi, 24, endpoint=False)
        target = float(angles[int(np.argmin(world.clearance(angles)))])
        sign = 1.0 if target > 0 else -1.0
        for _ in range(round(abs(target) / world.max_turn)):
            yield np.array([sign, 0.0, 0.0])
        for _ in range(40):  # walk until the wall stops the head (or it only slides along it)
            x, y, _yaw = world.pose
            yield np.array([0.0, 1.0, 0.0])
            if math.hypot(world.pose[0] - x, world.pose[1] - y) < world.max_speed / 2:
                break
        press = "move forward" if rng.random() < 0.7 else str(rng.choice(["strafe left", "strafe right"]))
        for _ in range(int(rng.integers(2, 9))):
            yield np.array(PHRASE_VECTORS[press])
        sign = float(rng.choice([-1.0, 1.0]))
        for _ in range(int(rng.integers(6, 13))):
            yield np.array([sign, 0.0, 0.0])

    def _revisit(self) -> Iterator[np.ndarray]:
        world, rng = self.world, self.rng
        assert world is not None
        yield from out_and_back(world, int(rng.choice([8, 16, 32])), rng, self._vector)
        yield from self._walk(int(rng.integers(4, 12)))

    def _idle(self) -> Iterator[np.ndarray]:
        for _ in range(int(self.rng.integers(1, 7))):
            yield STAY


# `worldsim record --env worldsim/Rooms-v0 --policy NAME`: name → zero-argument factory
POLICIES: dict[str, Callable[[], RoomsPolicy]] = {
    "rooms": RoomsPolicy,
    "rooms-walk": lambda: RoomsPolicy({"walk": 1.0}),
    "rooms-turns": lambda: RoomsPolicy({"turn": 1.0}),
    "rooms-bumps": lambda: RoomsPolicy({"bump": 1.0}),
    "rooms-revisit": lambda: RoomsPolicy({"revisit": 1.0}),
}
