"""Rooms: a first-person walk through a few connected rooms, seen through a head-mounted camera (raycast)."""

from __future__ import annotations

import math
from typing import Any, Literal

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from worldsim.errors import InvalidAction, suggest
from worldsim.frames import check_discrete_action, check_env_phrase

from ..pushworld import PhraseSpace
from .layout import COLOUR_NAMES, GREY, Layout, generate
from .render import cast, render

ROOMS_ACTIONS = ("turn left", "turn right", "move forward", "move back", "strafe left", "strafe right", "stay")
# (yaw rate, forward, strafe) in [-1, 1]: + yaw turns left (counter-clockwise seen from above), + strafe goes right
PHRASE_VECTORS = {"turn left": (1.0, 0.0, 0.0), "turn right": (-1.0, 0.0, 0.0), "move forward": (0.0, 1.0, 0.0),
                  "move back": (0.0, -1.0, 0.0), "strafe left": (0.0, 0.0, -1.0), "strafe right": (0.0, 0.0, 1.0),
                  "stay": (0.0, 0.0, 0.0)}
MODES = ("discrete", "text", "vector")
MAX_TURN_DEG = 15.0  # a full turn is 24 steps: three times the model's 8-frame window
MAX_SPEED = 0.25  # cells per step
RADIUS = 0.2  # the head's collision half-width, in cells
FOV_DEG = 66.0
TURN_STEPS = round(360 / MAX_TURN_DEG)

Pose = tuple[float, float, float]


def wrap(angle: float) -> float:
    """An angle in [-π, π)."""
    return (angle + math.pi) % (2 * math.pi) - math.pi


def move(layout: Layout, pose: Pose, command: np.ndarray, max_turn: float, max_speed: float,
         radius: float = RADIUS) -> tuple[Pose, bool]:
    """One step of head motion; returns the new pose and whether a wall stopped it (a bump).

    The yaw changes by command[0]·max_turn; the head translates by (command[1] forward, command[2] right)·max_speed
    along the heading halfway through the turn, so the negated command undoes a step exactly. A translation that
    would bring the head within `radius` of a solid cell is dropped on that axis (the head slides along walls).
    """
    x, y, yaw = pose
    mid = yaw + command[0] * max_turn / 2
    fwd, right = float(command[1]) * max_speed, float(command[2]) * max_speed
    dx = fwd * math.cos(mid) + right * math.sin(mid)
    dy = fwd * math.sin(mid) - right * math.cos(mid)
    bump = False
    if dx and not layout.is_free(x + dx, y, radius):
        dx, bump = 0.0, True
    if dy and not layout.is_free(x + dx, y + dy, radius):
        dy, bump = 0.0, True
    return (x + dx, y + dy, wrap(yaw + float(command[0]) * max_turn)), bump


def pose_motion(before: Pose, after: Pose, max_turn: float = math.radians(MAX_TURN_DEG),
                max_speed: float = MAX_SPEED) -> np.ndarray:
    """The (yaw rate, forward, strafe) command, in [-1, 1] units, that the motion before → after amounts to
    (translation read along the mid-step heading, as `move` applies it): float64 (3,)."""
    turn = wrap(after[2] - before[2])
    mid = before[2] + turn / 2
    dx, dy = after[0] - before[0], after[1] - before[1]
    fwd = dx * math.cos(mid) + dy * math.sin(mid)
    right = dx * math.sin(mid) - dy * math.cos(mid)
    return np.array([turn / max_turn, fwd / max_speed, right / max_speed])


class Rooms(gym.Env):
    """A head in a few connected rooms: walls coloured and patterned by wall, pillars, a checkered floor.

    Each reset draws a new map from the seed (`layout.generate`) and a start pose in it. The pose (x, y, yaw) is in
    cells and radians (yaw counter-clockwise from +x) and reported in `info["pose"]`.

    Args:
        render_mode: "rgb_array" or None. Observations are frames in both cases.
        size: frame height and width in pixels (>= 16).
        action_mode: "discrete" (Discrete(7) over ROOMS_ACTIONS), "text" (the phrases) or "vector"
            (Box([-1, 1]³): yaw rate, forward, strafe, scaled by max_turn_deg and max_speed).
        fov_deg: horizontal (and, the frame being square, vertical) field of view.
        max_turn_deg: the yaw change of "turn left" (yaw rate 1) per step.
        max_speed: the distance of "move forward" (forward 1) per step, in cells.
        supersample: rendering at this multiple of the size, area-averaged (1: off).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 16}
    vocabulary: tuple[str, ...] = ROOMS_ACTIONS

    def __init__(self, render_mode: str | None = None, size: int = 64,
                 action_mode: Literal["discrete", "text", "vector"] = "discrete", fov_deg: float = FOV_DEG,
                 max_turn_deg: float = MAX_TURN_DEG, max_speed: float = MAX_SPEED, supersample: int = 2):
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode={render_mode!r} is not supported; use 'rgb_array' or None.")
        if action_mode not in MODES:
            raise ValueError(f"action_mode={action_mode!r} is not supported; use one of {list(MODES)}."
                             f"{suggest(str(action_mode), MODES)}")
        if int(size) < 16:
            raise ValueError(f"size={size} is too small to see a room; use size >= 16.")
        if not 10 <= fov_deg <= 150:
            raise ValueError(f"fov_deg={fov_deg} is outside [10, 150]; first-person views use 60–90.")
        if not (0 < max_turn_deg <= 90 and 0 < max_speed < 1 - 2 * RADIUS):
            raise ValueError(f"max_turn_deg must be in (0, 90] and max_speed in (0, {1 - 2 * RADIUS:g}) (a step "
                             f"must not jump a wall); got {max_turn_deg}, {max_speed}.")
        if int(supersample) < 1:
            raise ValueError(f"supersample={supersample} must be >= 1.")
        self.render_mode, self.size, self.action_mode = render_mode, int(size), action_mode
        self.fov = math.radians(fov_deg)
        self.max_turn, self.max_speed = math.radians(max_turn_deg), float(max_speed)
        self.supersample = int(supersample)
        self.observation_space = spaces.Box(0, 255, (self.size, self.size, 3), np.uint8)
        if action_mode == "vector":
            self.action_space: spaces.Space = spaces.Box(-1.0, 1.0, (3,), np.float32)
        elif action_mode == "text":
            self.action_space = PhraseSpace(ROOMS_ACTIONS)
        else:
            self.action_space = spaces.Discrete(len(ROOMS_ACTIONS))
        self.layout: Layout = generate(np.random.default_rng(0))  # replaced on reset
        self.pose: Pose = (1.5, 1.5, 0.0)
        self._drawn: tuple[Pose, np.ndarray] | None = None  # the last frame drawn and its pose

    # -- actions --------------------------------------------------------------------------------------------------
    def action_text(self, action: Any) -> str:
        """The phrase of a valid text or discrete action; InvalidAction otherwise (vector mode has no phrases)."""
        if self.action_mode == "vector":
            raise InvalidAction("Rooms(action_mode='vector') takes (yaw rate, forward, strafe) vectors, not phrases; "
                                "use action_vector().")
        if self.action_mode == "text":
            return check_env_phrase(action, ROOMS_ACTIONS, "Rooms")
        return check_discrete_action(action, ROOMS_ACTIONS, "Rooms")

    def action_vector(self, action: Any) -> np.ndarray:
        """The (yaw rate, forward, strafe) command in [-1, 1]³ of a valid action in this env's mode: float64 (3,)."""
        if self.action_mode != "vector":
            return np.array(PHRASE_VECTORS[self.action_text(action)])
        if isinstance(action, str):
            raise InvalidAction(f"Rooms(action_mode='vector') takes a float array (yaw rate, forward, strafe) in "
                                f"[-1, 1]; received the text {action!r}. For phrases create it with "
                                "action_mode='text'.")
        try:
            vec = np.asarray(action, np.float64)
        except (TypeError, ValueError):
            raise InvalidAction(f"Rooms(action_mode='vector'): received {type(action).__name__} {action!r}; expected "
                                "a float array of shape (3,).") from None
        if vec.shape != (3,) or not np.isfinite(vec).all() or np.abs(vec).max() > 1 + 1e-6:
            raise InvalidAction(f"Rooms(action_mode='vector') takes 3 finite values in [-1, 1] (yaw rate, forward, "
                                f"strafe); received {vec.tolist()} of shape {vec.shape}.")
        return np.clip(vec, -1.0, 1.0)

    # -- gymnasium API --------------------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Draw a map and a start pose from `self.np_random`; returns (frame (size, size, 3) uint8, info).

        `options={"pose": (x, y, yaw)}` places the head explicitly (a free spot of the drawn map)."""
        super().reset(seed=seed)
        rng = self.np_random
        self.layout, self._drawn = generate(rng), None
        solid = self.layout.solid
        near = np.zeros_like(solid)  # cells with a wall or pillar among their 8 neighbours
        for oy in (-1, 0, 1):
            for ox in (-1, 0, 1):
                near[1:-1, 1:-1] |= solid[1 + oy:solid.shape[0] - 1 + oy, 1 + ox:solid.shape[1] - 1 + ox]
        free = np.argwhere(~(near | solid))  # start in the open, not with the nose against a wall
        if len(free) == 0:
            free = np.argwhere(~solid)
        cy, cx = free[int(rng.integers(len(free)))]
        self.pose = (float(cx + 0.5 + rng.uniform(-0.25, 0.25)), float(cy + 0.5 + rng.uniform(-0.25, 0.25)),
                     float(rng.uniform(-math.pi, math.pi)))
        for key, value in (options or {}).items():
            if key != "pose":
                raise ValueError(f"unknown reset option {key!r}.{suggest(key, ['pose'])} Options: ['pose'].")
            x, y, yaw = (float(v) for v in value)
            if not self.layout.is_free(x, y, RADIUS):
                raise ValueError(f"reset option pose={value!r} puts the head inside or against a wall; pick a free "
                                 f"spot (layout.is_free(x, y, {RADIUS})).")
            self.pose = (x, y, wrap(yaw))
        return self._frame(), {**self._info(), "caption": self.caption()}

    def step(self, action: Any):
        """Apply one head motion; returns (frame, reward=0, terminated=False, truncated=False, info)."""
        command = self.action_vector(action)
        self.pose, bump = move(self.layout, self.pose, command, self.max_turn, self.max_speed)
        info = {**self._info(), "bump": bump}
        if self.action_mode == "vector":
            info["action"] = command.astype(np.float32)
        else:
            info["action_text"] = self.action_text(action)
        return self._frame(), 0.0, False, False, info

    def render(self) -> np.ndarray | None:
        """The current view, (size, size, 3) uint8, when render_mode is 'rgb_array' (the last observation's pixels
        when the head has not moved since: recorders render after every step)."""
        if self.render_mode != "rgb_array":
            return None
        if self._drawn is not None and self._drawn[0] == self.pose:
            return self._drawn[1].copy()
        return self._frame()

    # -- helpers --------------------------------------------------------------------------------------------------
    def clearance(self, angles: np.ndarray | list[float]) -> np.ndarray:
        """Distance (cells) from the head to the first wall or pillar along each heading yaw + angle: (N,)."""
        a = self.pose[2] + np.asarray(angles, np.float64)
        t, *_ = cast(self.layout, self.pose[0], self.pose[1], np.cos(a), np.sin(a))
        return t

    def caption(self) -> str:
        """A sentence about the map and where the head starts."""
        x, y, yaw = self.pose
        room = self.layout.room_at(x, y)
        t, face, cx, cy = cast(self.layout, x, y, np.array([math.cos(yaw)]), np.array([math.sin(yaw)]))
        tex = self.layout.face_texture[face[0], cy[0], cx[0]]
        cls = int(self.layout.colour_class[tex])
        what = "pillar" if cls == GREY else "wall"
        return (f"{self.layout.rooms} rooms, {len(self.layout.pillars)} pillars; in room {room + 1}, "
                f"facing a {COLOUR_NAMES[cls]} {what} {t[0]:.1f} cells away")

    def _info(self) -> dict[str, Any]:
        x, y, yaw = self.pose
        return {"pose": (float(x), float(y), float(yaw)), "room": self.layout.room_at(x, y)}

    def _frame(self) -> np.ndarray:
        x, y, yaw = self.pose
        frame = render(self.layout, x, y, yaw, self.size, self.fov, self.supersample)
        self._drawn = (self.pose, frame.copy())
        return frame
