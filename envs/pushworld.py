"""PushWorld: a walled room where a disk agent pushes a sliding block onto a goal, drawn with OpenCV."""

from __future__ import annotations

import string
from typing import Any, Literal

import cv2
import gymnasium as gym
import numpy as np
from gymnasium import spaces

from worldsim.errors import suggest
from worldsim.frames import check_discrete_action, check_env_phrase

# Colours are RGB. They are far apart (> 150 in RGB L2) so colour thresholding can tell them apart.
FLOOR_COLOUR = (30, 30, 30)
WALL_COLOUR = (128, 128, 128)
AGENT_COLOUR = (40, 90, 255)
BLOCK_COLOUR = (255, 140, 0)
GOAL_COLOUR = (0, 200, 0)

PUSHWORLD_ACTIONS = ("move up", "move down", "move left", "move right", "stay")  # PushWorld's phrases, in order

# Unit moves (dx, dy) in image coordinates (y grows downwards), in PUSHWORLD_ACTIONS order.
_MOVES = {"move up": (0.0, -1.0), "move down": (0.0, 1.0), "move left": (-1.0, 0.0),
          "move right": (1.0, 0.0), "stay": (0.0, 0.0)}
_SHIFT = 4  # cv2 sub-pixel bits: coordinates are drawn with 1/16 px precision
_EPS = 1e-6
_REGIONS = (("top-left corner", "top wall", "top-right corner"),
            ("left wall", "centre", "right wall"),
            ("bottom-left corner", "bottom wall", "bottom-right corner"))

Pos = tuple[float, float]


class PhraseSpace(spaces.Text):
    """A Text space whose members are exactly the phrases of a fixed vocabulary."""

    def __init__(self, phrases: tuple[str, ...], seed: int | np.random.Generator | None = None):
        super().__init__(max_length=32, min_length=0, charset=string.printable, seed=seed)
        self.phrases = tuple(phrases)

    def sample(self, mask: Any = None, probability: Any = None) -> str:
        """A phrase drawn uniformly from the vocabulary (mask and probability are not supported)."""
        return self.phrases[int(self.np_random.integers(len(self.phrases)))]

    def contains(self, x: Any) -> bool:
        """True only for a phrase of the vocabulary."""
        return isinstance(x, str) and x in self.phrases

    def __repr__(self) -> str:
        return f"PhraseSpace({list(self.phrases)})"


class PushWorld(gym.Env):
    """A disk agent pushes a square block towards a goal marker in a walled room.

    All geometry is in float pixels of a `size`×`size` frame (scaled by size/64); a position (x, y)
    is in pixel-index coordinates, so pixel (column i, row j) has its centre at (i, j).

    Args:
        render_mode: "rgb_array" or None. Observations are frames in both cases.
        size: frame height and width in pixels.
        action_mode: "discrete" (Discrete(5) over PUSHWORLD_ACTIONS) or "text" (the phrases themselves).
        restitution: fraction of the block's speed kept, reversed, when it hits a wall (0 = stop).
        friction: factor applied to the block's velocity after every step.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 16}
    vocabulary: tuple[str, ...] = PUSHWORLD_ACTIONS

    def __init__(self, render_mode: str | None = None, size: int = 64,
                 action_mode: Literal["discrete", "text"] = "discrete",
                 restitution: float = 0.5, friction: float = 0.8):
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode={render_mode!r} is not supported; use 'rgb_array' or None.")
        if action_mode not in ("discrete", "text"):
            raise ValueError(f"action_mode={action_mode!r} is not supported; use 'discrete' or 'text'.")
        if size < 32:
            raise ValueError(f"size={size} is too small to draw the room; use size >= 32.")
        self.render_mode = render_mode
        self.size = int(size)
        self.action_mode = action_mode
        self.restitution = float(restitution)
        self.friction = float(friction)
        s = self.size / 64.0
        self.wall = max(1, round(4 * s))
        self.agent_radius = 4.0 * s
        self.block_half = 4.0 * s
        self.goal_half = 6.0 * s
        self.agent_step = 3.0 * s
        self.push_gain = 1.1
        self.stop_speed = 0.1 * s
        self.success_radius = 4.0 * s
        # Free space is the union of floor pixels: pixel edges at wall - 0.5 and size - wall - 0.5.
        self.lo = self.wall - 0.5
        self.hi = self.size - self.wall - 0.5
        self.observation_space = spaces.Box(0, 255, (self.size, self.size, 3), np.uint8)
        if action_mode == "text":
            self.action_space: spaces.Space = PhraseSpace(PUSHWORLD_ACTIONS)
        else:
            self.action_space = spaces.Discrete(len(PUSHWORLD_ACTIONS))
        self.agent = np.zeros(2)
        self.block = np.zeros(2)
        self.block_vel = np.zeros(2)
        self.goal = np.zeros(2)
        self.caption = ""

    # -- public helpers -------------------------------------------------------------------------
    def positions(self) -> dict[str, Pos]:
        """Centres (x, y) in pixels of the objects drawn in the current frame."""
        return {"agent_pos": _pos(self.agent), "block_pos": _pos(self.block), "goal_pos": _pos(self.goal)}

    def rest(self, x: float, v: float) -> float:
        """Where the block, at `x` and moving `v` px/step along one axis with the agent out of the way, comes to
        rest: `step`'s block physics (walls with restitution, friction, the stop speed) run on that axis alone.
        Scripted policies use it to aim pushes."""
        low, high = self.lo + self.block_half, self.hi - self.block_half
        for _ in range(200):
            if v == 0.0:
                break
            x += v
            if not low <= x <= high:
                x = min(max(x, low), high)
                v *= -self.restitution
            v *= self.friction
            if abs(v) < self.stop_speed:
                v = 0.0
        return x

    def action_text(self, action: Any) -> str:
        """The phrase of a valid action in this env's action mode; raises InvalidAction otherwise."""
        if self.action_mode == "text":
            return check_env_phrase(action, PUSHWORLD_ACTIONS, "PushWorld")
        return check_discrete_action(action, PUSHWORLD_ACTIONS, "PushWorld")

    # -- gymnasium API -------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Sample a layout from `self.np_random`; returns (frame (size, size, 3) uint8, info).

        `options` may place objects explicitly: {"agent_pos": (x, y), "block_pos": ..., "goal_pos": ...}.
        """
        super().reset(seed=seed)
        rng = self.np_random
        r, h = self.agent_radius, self.block_half
        # Most blocks leave room for the agent between block and wall so every side can be pushed.
        margin = 2 * r + 1 if rng.random() < 0.85 else 0.0
        for _ in range(1000):
            block = self._uniform(rng, h + margin)
            goal = self._uniform(rng, h + 1.0)
            agent = self._uniform(rng, r)
            if (np.linalg.norm(block - goal) > 12 * self.size / 64
                    and np.linalg.norm(agent - block) > r + h * np.sqrt(2) + 4 * self.size / 64
                    and np.linalg.norm(agent - goal) > 8 * self.size / 64):
                break
        self.agent, self.block, self.goal = agent, block, goal
        for key, value in (options or {}).items():  # explicit placements, e.g. for tests and evaluation
            self._place(key, value)
        self.block_vel = np.zeros(2)
        self.caption = (f"block {_region(self.block, self.size)}, goal {_region(self.goal, self.size)}, "
                        f"agent {_region(self.agent, self.size)}")
        return self._render_frame(), {"caption": self.caption, **self.positions()}

    def step(self, action: Any):
        """Apply one action; returns (frame, reward, terminated, truncated=False, info)."""
        phrase = self.action_text(action)
        agent_vel = np.array(_MOVES[phrase]) * self.agent_step
        block_before = self.block.copy()
        self.agent, agent_wall = self._clamp(self.agent + agent_vel, self.agent_radius)
        if _overlap(self.agent, self.agent_radius, self.block, self.block_half) > 0 and phrase != "stay":
            # The agent hands its velocity (a bit more) to the block; no rotation, no mass.
            self.block_vel = agent_vel * self.push_gain
        self.block, block_wall = self._clamp(self.block + self.block_vel, self.block_half)
        self.block_vel[block_wall] *= -self.restitution
        self._separate()
        self.block_vel *= self.friction
        if np.linalg.norm(self.block_vel) < self.stop_speed:
            self.block_vel[:] = 0.0
        agent_wall = agent_wall | self._touching(self.agent, self.agent_radius)
        block_wall = block_wall | self._touching(self.block, self.block_half)
        success = bool(np.linalg.norm(self.block - self.goal) <= self.success_radius)
        info = {**self.positions(), "action_text": phrase,
                "block_moved": bool(np.linalg.norm(self.block - block_before) > _EPS),
                "wall_contact": bool(agent_wall.any() or block_wall.any()), "success": success}
        return self._render_frame(), (1.0 if success else -0.01), success, False, info

    def render(self) -> np.ndarray | None:
        """The current frame, (size, size, 3) uint8, when render_mode is 'rgb_array'."""
        return self._render_frame() if self.render_mode == "rgb_array" else None

    # -- internals ------------------------------------------------------------------------------
    def _place(self, key: str, value: Any) -> None:
        extents = {"agent_pos": self.agent_radius, "block_pos": self.block_half, "goal_pos": self.block_half}
        if key not in extents:
            raise ValueError(f"unknown reset option {key!r}.{suggest(key, extents)} "
                             f"Options: {sorted(extents)}.")
        pos = np.asarray(value, dtype=np.float64)
        low, high = self.lo + extents[key], self.hi - extents[key]
        if pos.shape != (2,) or not np.all((pos >= low) & (pos <= high)):
            raise ValueError(f"reset option {key}={value!r} must be an (x, y) pair inside the room, "
                             f"each in [{low}, {high}].")
        setattr(self, key.removesuffix("_pos"), pos)

    def _uniform(self, rng: np.random.Generator, inset: float) -> np.ndarray:
        return rng.uniform(self.lo + inset, self.hi - inset, size=2)

    def _clamp(self, pos: np.ndarray, extent: float) -> tuple[np.ndarray, np.ndarray]:
        """Clamp a centre so the object stays on the floor; also returns which axes were clamped."""
        clamped = np.clip(pos, self.lo + extent, self.hi - extent)
        return clamped, np.abs(clamped - pos) > _EPS

    def _touching(self, pos: np.ndarray, extent: float) -> np.ndarray:
        return (pos - extent <= self.lo + _EPS) | (pos + extent >= self.hi - _EPS)

    def _separate(self) -> None:
        """Push the agent out of the block; if a wall stops it, push the block out of the agent."""
        r, h = self.agent_radius, self.block_half
        depth = _overlap(self.agent, r, self.block, h)
        if depth <= 0:
            return
        normal = _normal(self.agent, self.block, h)
        self.agent, _ = self._clamp(self.agent + normal * depth, r)
        depth = _overlap(self.agent, r, self.block, h)
        if depth > 0:  # the agent is squeezed against a wall
            self.block, _ = self._clamp(self.block - normal * depth, h)
            self.block_vel[:] = 0.0

    def _render_frame(self) -> np.ndarray:
        n, w, k = self.size, self.wall, 1 << _SHIFT
        frame = np.empty((n, n, 3), np.uint8)
        frame[:] = WALL_COLOUR
        frame[w:n - w, w:n - w] = FLOOR_COLOUR
        thick = max(1, round(2 * n / 64))
        inset = self.goal_half - thick / 2  # the outline's outer edge lies goal_half from the centre
        cv2.rectangle(frame, _fixed(self.goal - inset), _fixed(self.goal + inset), GOAL_COLOUR, thick,
                      cv2.LINE_8, _SHIFT)
        b0, b1 = _fixed(self.block - self.block_half + 0.5), _fixed(self.block + self.block_half - 0.5)
        cv2.rectangle(frame, b0, b1, BLOCK_COLOUR, -1, cv2.LINE_8, _SHIFT)
        radius = round((self.agent_radius - 0.5) * k)
        cv2.circle(frame, _fixed(self.agent), radius, AGENT_COLOUR, -1, cv2.LINE_8, _SHIFT)
        return frame


def _pos(p: np.ndarray) -> Pos:
    return (float(p[0]), float(p[1]))


def _fixed(p: np.ndarray) -> tuple[int, int]:
    """Float pixel coordinates → cv2 fixed-point coordinates with _SHIFT fractional bits."""
    k = 1 << _SHIFT
    return (round(float(p[0]) * k), round(float(p[1]) * k))


def _overlap(centre: np.ndarray, radius: float, box: np.ndarray, half: float) -> float:
    """Penetration depth of a circle into an axis-aligned square (≤ 0 when apart)."""
    d = centre - box
    outside = np.maximum(np.abs(d) - half, 0.0)
    if outside.any():
        return float(radius - np.linalg.norm(outside))
    return float(radius + half - np.abs(d).min())  # centre inside the box: exit along the nearest face


def _normal(centre: np.ndarray, box: np.ndarray, half: float) -> np.ndarray:
    """Unit direction that moves a circle at `centre` out of the square at `box`."""
    d = centre - box
    outside = np.sign(d) * np.maximum(np.abs(d) - half, 0.0)
    if np.linalg.norm(outside) > _EPS:
        return outside / np.linalg.norm(outside)
    axis = int(np.argmax(np.abs(d)))
    normal = np.zeros(2)
    normal[axis] = 1.0 if d[axis] >= 0 else -1.0
    return normal


def _region(p: np.ndarray, size: int) -> str:
    """Coarse 3×3 place words: 'in the top-left corner', 'near the top wall', 'in the centre'."""
    col = min(2, int(p[0] * 3 // size))
    row = min(2, int(p[1] * 3 // size))
    name = _REGIONS[row][col]
    return f"near the {name}" if name.endswith("wall") else f"in the {name}"


def detect_objects(frame: np.ndarray, size: int | None = None,
                   max_distance: float = 60.0, min_fraction: float = 0.3,
                   max_area_factor: float = 3.0) -> dict[str, Pos | None]:
    """Find the agent and block centres in a PushWorld frame by colour thresholding.

    Robust to mild blur and noise: a pixel belongs to an object when its RGB L2 distance to the
    object's colour is below `max_distance`; the object is the largest 8-connected blob of such pixels
    and counts as found when its area is between `min_fraction` and `max_area_factor` times the
    nominal area. The centre is the blob's centroid.

    Args:
        frame: (H, W, 3) uint8 RGB frame (H == W).
        size: the world's nominal size (defaults to the frame width) for the nominal areas.
        max_distance: colour distance threshold in RGB units.
        min_fraction: minimum blob area as a fraction of the nominal object area.
        max_area_factor: maximum blob area as a multiple of the nominal area.

    Returns:
        {"agent_pos": (x, y) or None, "block_pos": (x, y) or None}.
    """
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"detect_objects expects an (H, W, 3) frame, got shape {frame.shape}.")
    s = (size or frame.shape[1]) / 64.0
    pixels = frame.astype(np.float32)
    found: dict[str, Pos | None] = {}
    nominal = {"agent_pos": (AGENT_COLOUR, np.pi * (4 * s) ** 2), "block_pos": (BLOCK_COLOUR, (8 * s) ** 2)}
    for key, (colour, area) in nominal.items():
        mask = np.linalg.norm(pixels - np.array(colour, np.float32), axis=-1) < max_distance
        # the largest 8-connected blob of matching colour, of a plausible size: scattered speckle of the
        # right colour (a noisy generated frame) is not an object, nor is a smear many times its size
        n, _, stats, centroids = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
        if n <= 1:
            found[key] = None
            continue
        best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        blob = stats[best, cv2.CC_STAT_AREA]
        ok = min_fraction * area <= blob <= max_area_factor * area
        found[key] = (float(centroids[best][0]), float(centroids[best][1])) if ok else None
    return found
