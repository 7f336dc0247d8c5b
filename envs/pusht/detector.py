"""PushT's pose detector: the T's position and angle and the agent's position, read from a frame (real or imagined).

Every pixel is explained as a blend of two of the scene's colours (the nearest segment between two palette colours in
RGB), which gives how much of it is T and how much is agent, anti-aliased edges included. The T's centroid and second
moments give its axis; the third moment along the axis tells the stem's side (the T's mass is skewed towards its
stem), so the angle is read on the whole circle [0, 2π). Pure numpy; needs no gym-pusht.
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

from .env import ARENA

# pygame colours gym-pusht draws with: the T (LightSlateGray outline; fill 1.2× lighter), the agent (RoyalBlue rim,
# lighter core), the goal zone (LightGreen), the walls (LightGray), the floor (white).
T_FILL, T_EDGE = (143, 163, 184), (119, 136, 153)
AGENT_RIM, AGENT_CORE = (65, 105, 225), (78, 126, 255)
GOAL, WALL, FLOOR = (144, 238, 144), (211, 211, 211), (255, 255, 255)
_PALETTE = {"t_fill": (T_FILL, 1, 0), "t_edge": (T_EDGE, 1, 0), "agent_rim": (AGENT_RIM, 0, 1),
            "agent_core": (AGENT_CORE, 0, 1), "goal": (GOAL, 0, 0), "wall": (WALL, 0, 0), "floor": (FLOOR, 0, 0)}

# The T in its own frame (env units, y towards the stem): a 120×30 bar over a 30×90 stem, as gym-pusht's add_tee
# builds it, drawn with a 2-unit outline. Its drawn area's centroid lies CENTROID_Y down the axis from the origin.
BAR, STEM, OUTLINE = (120.0, 30.0), (30.0, 90.0), 2.0
_BAR_AREA = (BAR[0] + 2 * OUTLINE) * (BAR[1] + 2 * OUTLINE)
_STEM_AREA = (STEM[0] + 2 * OUTLINE) * STEM[1]
CENTROID_Y = (_BAR_AREA * BAR[1] / 2 + _STEM_AREA * (BAR[1] + OUTLINE + STEM[1] / 2)) / (_BAR_AREA + _STEM_AREA)
T_AREA = _BAR_AREA + _STEM_AREA  # env units²
AGENT_AREA = math.pi * 15.0**2
MIN_FRACTION = 0.4  # an object is found when at least this fraction of its expected area is seen


def _segments() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every pair of palette colours: starts (S, 3), directions (S, 3), and the (T, agent) weights at each end."""
    items = list(_PALETTE.values())
    starts, dirs, w0, w1 = [], [], [], []
    for i, (c0, t0, a0) in enumerate(items):
        for c1, t1, a1 in items[i:]:
            starts.append(c0)
            dirs.append(np.subtract(c1, c0))
            w0.append((t0, a0))
            w1.append((t1, a1))
    return (np.array(starts, np.float32), np.array(dirs, np.float32), np.array(w0, np.float32),
            np.array(w1, np.float32))


def unmix(colours: np.ndarray) -> np.ndarray:
    """(N, 3) RGB colours → (N, 2) how much of each is T and how much is agent, from its nearest palette segment."""
    starts, dirs, w0, w1 = _segments()
    p = colours.reshape(-1, 1, 3).astype(np.float32)
    length2 = np.maximum((dirs**2).sum(-1), 1.0)  # a colour paired with itself has no direction
    t = np.clip(((p - starts) * dirs).sum(-1) / length2, 0.0, 1.0)  # (N, S)
    best = (((p - starts) - t[..., None] * dirs) ** 2).sum(-1).argmin(1)
    tb = t[np.arange(len(p)), best][:, None]
    return (1 - tb) * w0[best] + tb * w1[best]


_LUT: np.ndarray | None = None  # unmix() of every colour quantised to 6 bits a channel: (64³, 2) float32


def coverage(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """How much of each pixel is T and how much is agent: two (H, W) float32 maps in [0, 1]."""
    global _LUT
    if _LUT is None:
        levels = np.arange(64, dtype=np.float32) * 4 + 1.5  # the middle of each 4-level bin
        grid = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(-1, 3)
        _LUT = np.concatenate([unmix(chunk) for chunk in np.array_split(grid, 16)]).astype(np.float32)
    q = (frame >> 2).astype(np.int32)
    weights = _LUT[(q[..., 0] << 12) | (q[..., 1] << 6) | q[..., 2]]  # (H, W, 2)
    return weights[..., 0], weights[..., 1]


def _largest_blob(mass: np.ndarray) -> np.ndarray:
    """`mass` outside the largest connected region of mostly-covered pixels (and its one-pixel rim) set to 0, so that
    stray blends elsewhere (a three-colour edge pixel) do not pull the moments."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats((mass > 0.5).astype(np.uint8), connectivity=8)
    if count < 2:
        return mass
    biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    region = cv2.dilate((labels == biggest).astype(np.uint8), np.ones((3, 3), np.uint8))
    return mass * region


def _behind_agent(block: np.ndarray, agent: np.ndarray, expected: float) -> np.ndarray:
    """The T's coverage with the part the agent hides put back: when an agent pressed into the T (against a wall)
    is drawn over it, the T's pixels under the agent (the agent's pixels inside the T's convex hull) count as T, so
    the notch does not turn the T's axis."""
    missing = expected - float(block.sum())
    if missing < 0.1 * expected or agent.max() < 0.5:
        return block
    ys, xs = np.nonzero(block > 0.5)
    if len(xs) < 3:
        return block
    hull = np.zeros(block.shape, np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(np.stack([xs, ys], 1).astype(np.int32)), 1)
    hidden = agent * hull
    if hidden.sum() <= 0:
        return block
    return block + hidden * min(1.0, missing / float(hidden.sum()))


def _centroid(mass: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """(total mass, centroid (x, y) in px, offsets (N, 2) and weights (N,) of the largest blob's pixels)."""
    mass = _largest_blob(mass)
    ys, xs = np.nonzero(mass > 0.02)
    w = mass[ys, xs].astype(np.float64)
    total = float(w.sum())
    if total <= 0:
        return 0.0, np.zeros(2), np.zeros((0, 2))
    pts = np.stack([xs, ys], 1).astype(np.float64)
    centre = (w[:, None] * pts).sum(0) / total
    return total, centre, np.concatenate([pts - centre, w[:, None]], 1)


def t_axis(offsets: np.ndarray) -> np.ndarray:
    """The T's axis (unit (x, y) in the image, from the bar towards the stem) from weighted pixel offsets (N, 3)
    about its centroid: the principal axis of larger variance, oriented so the third moment along it is positive."""
    d, w = offsets[:, :2], offsets[:, 2]
    cov = (w[:, None, None] * d[:, :, None] * d[:, None, :]).sum(0) / w.sum()
    _, vecs = np.linalg.eigh(cov)
    axis = vecs[:, 1]
    if float((w * (d @ axis) ** 3).sum()) < 0:
        axis = -axis
    return axis


def detect_pose(frame: np.ndarray) -> dict[str, Any]:
    """PushT's objects in a frame uint8 (H, W, 3) of any square size (gym-pusht's 96, or a model's 64).

    Returns (None for an object not found):
        block_pos: (x, y) env units of the T's origin, gym-pusht's `block_pose[:2]` (the middle of the bar's outer
            edge); block_angle: radians in [0, 2π), gym-pusht's `block_pose[2]` modulo 2π; block_px: the T's
            origin in pixels; agent_pos: (x, y) env units (`pos_agent`); agent_px: in pixels.
    """
    if not (isinstance(frame, np.ndarray) and frame.ndim == 3 and frame.shape[2] == 3):
        raise ValueError(f"detect_pose takes a frame (H, W, 3) uint8; received {getattr(frame, 'shape', frame)!r}.")
    h, w = frame.shape[:2]
    scale = np.array([w / ARENA, h / ARENA])  # px per env unit
    px_area = float(scale.prod())
    block_mass, agent_mass = coverage(frame)
    out: dict[str, Any] = {"block_pos": None, "block_angle": None, "block_px": None, "agent_pos": None,
                           "agent_px": None}
    block_mass = _behind_agent(_largest_blob(block_mass), agent_mass, T_AREA * px_area)
    total, centre, offsets = _centroid(block_mass)
    if total >= MIN_FRACTION * T_AREA * px_area:
        axis = t_axis(offsets)
        angle = math.atan2(-axis[0], axis[1]) % (2 * math.pi)  # the T's local y axis is (-sin θ, cos θ)
        origin_px = centre - CENTROID_Y * axis * scale
        out.update(block_px=tuple(map(float, origin_px)), block_angle=angle,
                   block_pos=tuple(map(float, (origin_px + 0.5) / scale)))
    total, centre, _ = _centroid(agent_mass)
    if total >= MIN_FRACTION * AGENT_AREA * px_area:
        out.update(agent_px=tuple(map(float, centre)), agent_pos=tuple(map(float, (centre + 0.5) / scale)))
    return out
