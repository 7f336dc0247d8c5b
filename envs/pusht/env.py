"""PushT (gym-pusht) for worldsim: frames drawn from the state at the model's size, the state saved and restored
exactly, and a physics-only step for planners that simulate thousands of candidate steps.

gym-pusht is an optional extra (`pip install -e ".[pusht]"`); this module imports it only when an env is made.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import gymnasium as gym
import numpy as np

from worldsim.errors import WorldSimError

ENV_ID = "gym_pusht/PushT-v0"
NATIVE_SIZE = 96  # gym-pusht's pixel observations: 96×96, resized (bilinear) from a 512×512 drawing
ARENA = 512.0  # env units across the drawing (and the action box [0, 512]²)
GOAL_POSE = (256.0, 256.0, math.pi / 4)  # gym-pusht's fixed goal (its own task)
WHITE = (255, 255, 255)
# pygame's LightGreen, gym-pusht's goal zone colour (drawn under everything else)
GOAL_COLOUR = (144, 238, 144)


# The T's outline in its own frame (env units; x along the bar, y from the bar's outer edge towards the stem's end):
# a 120×30 bar over a 30×90 stem, as gym-pusht's add_tee builds it.
T_OUTLINE = np.array([(-60, 0), (60, 0), (60, 30), (15, 30), (15, 120), (-15, 120), (-15, 30), (-60, 30)], float)
AGENT_RADIUS = 15.0


def to_world(pose: Any, points: np.ndarray) -> np.ndarray:
    """Points (N, 2) in the T's frame → env coordinates, for the T at `pose` (x, y, angle); pymunk's convention
    (image axes: x right, y down; positive angles turn x towards y)."""
    x, y, angle = (float(v) for v in pose[:3])
    c, s = math.cos(angle), math.sin(angle)
    return np.asarray(points, float) @ np.array([[c, s], [-s, c]]) + (x, y)


def outline_edges() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The T's eight edges in its own frame: starts (8, 2), ends (8, 2) and outward unit normals (8, 2)."""
    a, b = T_OUTLINE, np.roll(T_OUTLINE, -1, axis=0)
    d = b - a
    normals = np.stack([d[:, 1], -d[:, 0]], 1) / np.linalg.norm(d, axis=1, keepdims=True)
    # the outline runs clockwise on screen (y down), so (dy, -dx) points outwards
    return a, b, normals


def require_gym_pusht() -> Any:
    """The gym_pusht module (importing it registers gym_pusht/PushT-v0), or a WorldSimError saying how to install it."""
    try:
        import gym_pusht
    except ImportError as exc:
        raise WorldSimError(f"the PushT world needs the gym-pusht package, which is not installed ({exc}). Fix: "
                            "pip install -e \".[pusht]\" (or pip install gym-pusht).") from None
    return gym_pusht


@dataclass(frozen=True)
class PushTState:
    """Everything that moves in PushT (env units, radians, per second): enough to continue the physics exactly from a
    fresh pymunk space. `block` is gym-pusht's `block_pose` (the T's body origin, the middle of its bar's outer edge,
    and its angle); `agent` is `pos_agent`."""

    agent: tuple[float, float]
    agent_velocity: tuple[float, float]
    block: tuple[float, float, float]
    block_velocity: tuple[float, float]
    block_spin: float

    def to_list(self) -> list[float]:
        """[agent x, agent y, block x, block y, block angle] (gym-pusht's state order), for reports."""
        return [*map(float, self.agent), *map(float, self.block)]


def save_state(unwrapped: Any) -> PushTState:
    """The state of a gym-pusht `PushTEnv` (the unwrapped env)."""
    a, b = unwrapped.agent, unwrapped.block
    return PushTState((float(a.position.x), float(a.position.y)), (float(a.velocity.x), float(a.velocity.y)),
                      (float(b.position.x), float(b.position.y), float(b.angle)),
                      (float(b.velocity.x), float(b.velocity.y)), float(b.angular_velocity))


def restore_state(unwrapped: Any, state: PushTState) -> None:
    """Put a `PushTEnv` in `state` on a fresh pymunk space (no contact caches carried over), so that the same state and
    actions always give the same future. The angle is set before the position: pymunk turns a body about its centre
    of gravity, which is not the T's origin (gym-pusht's own `reset_to_state` sets them the other way round, so the
    T it places is not the one asked for)."""
    unwrapped._setup()
    unwrapped.agent.position = state.agent
    unwrapped.agent.velocity = state.agent_velocity
    unwrapped.block.angle = state.block[2]
    unwrapped.block.position = state.block[:2]
    unwrapped.block.velocity = state.block_velocity
    unwrapped.block.angular_velocity = state.block_spin
    for body in (unwrapped.agent, unwrapped.block):  # shapes cache their placement until reindexed (or stepped)
        unwrapped.space.reindex_shapes_for_body(body)


def physics_step(unwrapped: Any, action: np.ndarray) -> None:
    """One env step of physics only: gym-pusht's `step` without its coverage, observation and info (about 4× faster;
    tests check that it leaves the same state). The agent follows a PD controller towards `action` for 10 substeps."""
    target = np.asarray(action, np.float64)
    for _ in range(int(1 / (unwrapped.dt * unwrapped.control_hz))):
        pos, vel = unwrapped.agent.position, unwrapped.agent.velocity
        acceleration = unwrapped.k_p * (target - np.array(pos)) - unwrapped.k_v * np.array(vel)
        unwrapped.agent.velocity = tuple(np.array(vel) + acceleration * unwrapped.dt)
        unwrapped.space.step(unwrapped.dt)


def draw(unwrapped: Any, size: int = NATIVE_SIZE) -> np.ndarray:
    """The scene as (size, size, 3) uint8: gym-pusht's drawing (goal zone, agent, T) without the contact points its
    debug drawing adds (they depend on the solver's caches, not the state), resized to 96×96 as gym-pusht's pixel
    observations are, then area-averaged to `size` (the resize `worldsim record --size` applies)."""
    import pygame
    import pymunk
    from gym_pusht.envs.pymunk_override import DrawOptions

    screen = pygame.Surface((int(ARENA), int(ARENA)))
    screen.fill(WHITE)
    options = DrawOptions(screen)
    options.flags = pymunk.SpaceDebugDrawOptions.DRAW_SHAPES
    goal = unwrapped.get_goal_pose_body(unwrapped.goal_pose)
    for shape in unwrapped.block.shapes:
        points = [goal.local_to_world(v) for v in shape.get_vertices()]
        pygame.draw.polygon(screen, GOAL_COLOUR, [(round(p.x), round(p.y)) for p in points])
    unwrapped.space.debug_draw(options)
    frame = unwrapped._get_img(screen, width=NATIVE_SIZE, height=NATIVE_SIZE, render_action=False)
    if size != NATIVE_SIZE:
        frame = cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(frame, dtype=np.uint8)


class PushTFrames(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """gym-pusht's PushT whose observations and renders are (size, size, 3) uint8 frames drawn from the state
    (see `draw`); actions are gym-pusht's: Box(0, 512, (2,)), where the agent should go. `info` is gym-pusht's
    (`pos_agent`, `block_pose`, `goal_pose`, `n_contacts`; after a step also `coverage`, `is_success`)."""

    def __init__(self, env: gym.Env, size: int = NATIVE_SIZE):
        gym.utils.RecordConstructorArgs.__init__(self, size=size)  # so env.spec can make it again (check_env does)
        super().__init__(env)
        if not isinstance(size, int) or size < 8:
            raise WorldSimError(f"PushT frames need a side of at least 8 px; received size={size!r}.")
        self.size = size
        self.observation_space = gym.spaces.Box(0, 255, (size, size, 3), np.uint8)
        self.metadata = {**env.metadata, "render_modes": ["rgb_array"]}
        self._frame: np.ndarray | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        _, info = self.env.reset(seed=seed, options=options)
        self._frame = draw(self.env.unwrapped, self.size)
        return self._frame.copy(), info

    def step(self, action):
        _, reward, terminated, truncated, info = self.env.step(np.asarray(action, np.float64))
        self._frame = draw(self.env.unwrapped, self.size)
        return self._frame.copy(), float(reward), bool(terminated), truncated, info

    def render(self) -> np.ndarray:
        if self._frame is None:
            self._frame = draw(self.env.unwrapped, self.size)
        return self._frame.copy()

    def state(self) -> PushTState:
        return save_state(self.env.unwrapped)

    def restore(self, state: PushTState) -> np.ndarray:
        """Put the env in `state`; returns its frame."""
        restore_state(self.env.unwrapped, state)
        self._frame = draw(self.env.unwrapped, self.size)
        return self._frame.copy()


def make_env(size: int | None = None, action_mode: str | None = None, **kwargs: Any) -> PushTFrames:
    """gym_pusht/PushT-v0 (its 300-step limit) with frames of `size` px (default 96, gym-pusht's own); vector actions
    only (action_mode None or "vector"). Extra keywords go to gym-pusht (e.g. damping)."""
    if action_mode not in (None, "vector"):
        raise WorldSimError(f"PushT's actions are vectors (where the agent goes, Box(0, 512, (2,))); received "
                            f"action_mode={action_mode!r}. Fix: use action_mode='vector' or None.")
    require_gym_pusht()
    env = gym.make(ENV_ID, obs_type="state", render_mode="rgb_array", **kwargs)
    return PushTFrames(env, NATIVE_SIZE if size is None else int(size))


def angle_error(a: float, b: float) -> float:
    """|a - b| wrapped to [0, π] (radians)."""
    return abs((a - b + math.pi) % (2 * math.pi) - math.pi)
