"""Rooms' renderer: a numpy raycaster (DDA through the cell grid, every column at once) with textured walls, a cast
checkered floor and a shaded ceiling. Pure functions of a Layout and a pose."""

from __future__ import annotations

import cv2
import numpy as np

from .layout import Layout

FOG = 0.12  # brightness falls as 1 / (1 + FOG · distance in cells)
SIDE_SHADE = 0.8  # faces along x (facing ±y) are drawn darker, as if lit from the side


def cast(layout: Layout, x: float, y: float, rx: np.ndarray, ry: np.ndarray) -> tuple[np.ndarray, ...]:
    """March rays from (x, y) along (rx, ry) through the grid until each enters a solid cell (DDA).

    Args:
        layout: the map; its border is solid, so every ray stops.
        x, y: the origin, in a free cell.
        rx, ry: (N,) ray directions (any length, not both 0).

    Returns:
        t: (N,) the ray parameter at the hit (the distance along a unit ray; the perpendicular distance for
        camera rays whose forward component is 1); face: (N,) int, the face hit (layout.FACES order);
        cx, cy: (N,) int, the cell hit.
    """
    rx = np.where(np.abs(rx) < 1e-12, 1e-12, rx)
    ry = np.where(np.abs(ry) < 1e-12, 1e-12, ry)
    cx0, cy0 = int(np.floor(x)), int(np.floor(y))
    ddx, ddy = np.abs(1.0 / rx), np.abs(1.0 / ry)
    sx, sy = np.where(rx < 0, -1, 1), np.where(ry < 0, -1, 1)
    tx = np.where(rx < 0, x - cx0, cx0 + 1 - x) * ddx  # t at the next vertical / horizontal grid line
    ty = np.where(ry < 0, y - cy0, cy0 + 1 - y) * ddy
    cx, cy = np.full(rx.shape, cx0), np.full(rx.shape, cy0)
    along_x = np.zeros(rx.shape, bool)
    active = np.ones(rx.shape, bool)
    hit_t = np.zeros(rx.shape)
    h, w = layout.shape
    for _ in range(h + w + 2):
        step_x = active & (tx < ty)
        step_y = active & ~step_x
        cx += np.where(step_x, sx, 0)
        cy += np.where(step_y, sy, 0)
        t = np.where(step_x, tx, np.where(step_y, ty, 0.0))  # t of the line just crossed
        tx = tx + np.where(step_x, ddx, 0.0)
        ty = ty + np.where(step_y, ddy, 0.0)
        along_x = np.where(active, step_x, along_x)
        hit_t = np.where(active, t, hit_t)
        active &= ~layout.solid[cy, cx]
        if not active.any():
            break
    # a ray travelling +x meets the face that looks -x (face 1), and so on
    face = np.where(along_x, np.where(sx > 0, 1, 0), np.where(sy > 0, 3, 2))
    return hit_t, face, cx, cy


def render(layout: Layout, x: float, y: float, yaw: float, size: int, fov: float, supersample: int = 2
           ) -> np.ndarray:
    """The first-person view from (x, y) looking along `yaw` (radians, counter-clockwise from +x).

    The camera sits at half the wall height; a wall of height 1 at perpendicular distance d spans f/d rows
    (f = size/2 / tan(fov/2)), so the horizon is the middle row and every column shows a wall there. Rendered at
    `supersample`× the size and area-averaged, which keeps stripes at a distance from aliasing. Every pixel is a
    material (a wall texture, a room's floor tile, the ceiling) times a brightness, looked up once at the end.

    Returns:
        (size, size, 3) uint8 RGB.
    """
    n = size * supersample
    cam = (np.arange(n, dtype=np.float32) + 0.5) / n * 2 - 1  # screen x, left → right
    half = np.tan(fov / 2)
    dx, dy = np.cos(yaw), np.sin(yaw)
    rx = dx + np.sin(yaw) * half * cam  # the viewer's right is (sin yaw, -cos yaw)
    ry = dy - np.cos(yaw) * half * cam
    dist, face, cx, cy = cast(layout, x, y, rx.astype(np.float64), ry.astype(np.float64))
    dist = np.maximum(dist, 1e-3).astype(np.float32)
    tex = np.maximum(layout.face_texture[face, cy, cx], 0)  # (every face a ray reaches has a room in front)
    wx, wy = x + dist * rx, y + dist * ry
    fx_, fy_ = wx - np.floor(wx), wy - np.floor(wy)
    # u runs left → right as the viewer sees the face
    u = np.select([face == 0, face == 1, face == 2], [fy_, 1 - fy_, 1 - fx_], fx_).astype(np.float32)

    focal = np.float32(n / 2 / half)
    p = (np.arange(n, dtype=np.float32) + 0.5 - n / 2)[:, None]  # rows' offsets below the horizon, (n, 1)
    line = focal / dist  # wall height on screen, (n,)
    v = p / line + 0.5  # (n, n): 0 at the wall's top, 1 at its bottom
    wall = (v >= 0) & (v <= 1)
    pa, pb, pc = layout.pattern[tex].T
    bit = (np.floor(pa * u) + np.floor(pb * v) + np.floor(pc * (u + v))).astype(np.int32) & 1
    bright = (1 - layout.depth[tex] * bit) * (1 - layout.gradient[tex] * np.clip(v, 0, 1))
    bright *= np.where(face >= 2, np.float32(SIDE_SHADE), np.float32(1)) / (1 + FOG * dist)

    # floor (the lower half) cast to the ground at the row's distance; ceiling (the upper half) shaded by it
    k = len(layout.colour)
    d_plane = 0.5 * focal / p[n // 2:]  # (n/2, 1)
    h, w = layout.shape
    ix = np.clip((x + d_plane * rx).astype(np.int32), 0, w - 1)
    iy = np.clip((y + d_plane * ry).astype(np.int32), 0, h - 1)
    floor = k + 2 * np.maximum(layout.room[iy, ix], 0) + ((ix + iy) & 1)
    material = np.concatenate([np.full((n - n // 2, n), k + 2 * layout.rooms), floor])
    fog = 1 / (1 + FOG * np.concatenate([d_plane[::-1], d_plane]))
    material = np.where(wall, tex, material)
    bright = fog + wall * (bright - fog)
    table = np.concatenate([layout.colour, layout.floor.reshape(-1, 3), layout.ceiling[None]])
    frame = np.take(table, material, axis=0) * bright[..., None]
    if supersample > 1:
        frame = cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)
    return np.clip(frame + 0.5, 0, 255).astype(np.uint8)
