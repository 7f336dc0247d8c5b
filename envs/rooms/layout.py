"""Rooms' maps: a few connected rooms on a grid of cells, with a texture per wall face, drawn from a seed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Wall colours (RGB at full brightness), far apart in chromaticity so a detector tells them apart by hue alone;
# the last is the achromatic class of pillars. Floors and the ceiling are near-grey and never reach the horizon.
PALETTE = np.array([(225, 60, 50), (235, 145, 35), (215, 205, 40), (70, 190, 70), (40, 185, 185),
                    (60, 100, 235), (150, 70, 225), (230, 80, 175), (210, 210, 210)], np.float32)
COLOUR_NAMES = ("red", "orange", "yellow", "green", "teal", "blue", "purple", "pink", "grey")
GREY = len(PALETTE) - 1
HUES = GREY  # chromatic classes 0 … 7

# Patterns: a texture's brightness bit is (⌊a·u⌋ + ⌊b·v⌋ + ⌊c·(u+v)⌋) mod 2 (u across a cell face, v down it),
# dimmed by `depth`; a gradient dims towards the bottom. Keys: (a, b, c) per unit of n, and the gradient.
PATTERNS = {"plain": ((0, 0, 0), 0.0), "stripes": ((1, 0, 0), 0.0), "bands": ((0, 1, 0), 0.0),
            "checks": ((1, 1, 0), 0.0), "diagonal": ((0, 0, 1), 0.0), "gradient": ((0, 0, 0), 0.55)}
SHAPES = ((1, 2), (2, 1), (1, 3), (3, 1), (2, 2))  # rooms as (rows, columns) of the room grid
SHAPE_P = (0.15, 0.15, 0.15, 0.15, 0.4)
ROOM_SIDE = (5, 9)  # interior side of a room in cells, [low, high)
# Face f of a solid cell faces direction FACES[f]; the ray that sees it travels the other way.
FACES = ((1, 0), (-1, 0), (0, 1), (0, -1))  # +x, -x, +y, -y as (dx, dy)


@dataclass(frozen=True)
class Layout:
    """One map. Cells are unit squares; cell (i, j) covers x ∈ [j, j+1), y ∈ [i, i+1); arrays are indexed [y, x].

    Attributes:
        solid: (H, W) bool, walls and pillars; the border is solid.
        room: (H, W) int, the room of each free cell (doorways belong to one side), -1 for solid cells.
        face_texture: (4, H, W) int, the texture of each face (FACES order) of each solid cell, -1 where no free
            cell lies in front of it.
        colour: (K, 3) float32 RGB of texture k; colour_class: (K,) int, its PALETTE index.
        pattern: (K, 3) float32 (a, b, c) stripe frequencies; depth: (K,) dimming of the pattern; gradient: (K,).
        floor: (R, 2, 3) float32 checker colours of each room's floor; ceiling: (3,) float32.
        pillars: (P, 2) int cells (x, y) of the pillars.
        rooms: number of rooms.
    """

    solid: np.ndarray
    room: np.ndarray
    face_texture: np.ndarray
    colour: np.ndarray
    colour_class: np.ndarray
    pattern: np.ndarray
    depth: np.ndarray
    gradient: np.ndarray
    floor: np.ndarray
    ceiling: np.ndarray
    pillars: np.ndarray
    rooms: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.solid.shape[0], self.solid.shape[1]

    def is_free(self, x: float, y: float, radius: float = 0.0) -> bool:
        """Whether a square of half-side `radius` centred on (x, y) touches no solid cell."""
        h, w = self.shape
        x0, x1 = int(np.floor(x - radius)), int(np.floor(x + radius - 1e-9))
        y0, y1 = int(np.floor(y - radius)), int(np.floor(y + radius - 1e-9))
        if x0 < 0 or y0 < 0 or x1 >= w or y1 >= h:
            return False
        return not self.solid[y0:y1 + 1, x0:x1 + 1].any()

    def room_at(self, x: float, y: float) -> int:
        """The room of the cell containing (x, y), -1 for a solid cell or outside the map."""
        h, w = self.shape
        i, j = int(np.floor(y)), int(np.floor(x))
        return int(self.room[i, j]) if 0 <= i < h and 0 <= j < w else -1


def generate(rng: np.random.Generator) -> Layout:
    """A map drawn from `rng`: 2–4 rooms of 5–8 cells a side in a room grid, joined by doorways along a random
    spanning tree (and a third of the other shared walls), 0–2 pillars per room, and per room four distinct wall
    colours with random patterns."""
    rows, cols = SHAPES[int(rng.choice(len(SHAPES), p=SHAPE_P))]
    heights = rng.integers(*ROOM_SIDE, size=rows)
    widths = rng.integers(*ROOM_SIDE, size=cols)
    y0 = np.concatenate([[1], 1 + np.cumsum(heights + 1)])  # first interior row of each room row (+ the end)
    x0 = np.concatenate([[1], 1 + np.cumsum(widths + 1)])
    h, w = int(y0[-1]), int(x0[-1])
    solid = np.ones((h, w), bool)
    room = np.full((h, w), -1, np.int64)
    for r in range(rows):
        for c in range(cols):
            sl = np.s_[y0[r]:y0[r] + heights[r], x0[c]:x0[c] + widths[c]]
            solid[sl] = False
            room[sl] = r * cols + c
    _doors(rng, rows, cols, heights, widths, y0, x0, solid, room)
    pillars = _pillars(rng, rows, cols, heights, widths, y0, x0, solid, room)

    n_rooms = rows * cols
    colour, colour_class, pattern, depth, gradient = [], [], [], [], []
    kinds = list(PATTERNS)
    for k in range(n_rooms * 4 + len(pillars)):
        if k < n_rooms * 4:
            if k % 4 == 0:
                hues = rng.permutation(HUES)[:4]  # the four walls of a room differ in colour
            cls = int(hues[k % 4])
            tint = rng.uniform(0.85, 1.0)
        else:
            cls, tint = GREY, rng.uniform(0.7, 1.0)
        kind = kinds[int(rng.integers(len(kinds)))]
        (a, b, c), grad = PATTERNS[kind]
        n = float(rng.integers(2, 5))
        colour.append(PALETTE[cls] * tint)
        colour_class.append(cls)
        pattern.append((a * n, b * n, c * n))
        depth.append(rng.uniform(0.3, 0.45))
        gradient.append(grad if grad else float(rng.choice([0.0, 0.2])))
    face_texture = np.full((4, h, w), -1, np.int64)
    for f, (dx, dy) in enumerate(FACES):
        front = np.full((h, w), -1, np.int64)  # the room of the free cell in front of face f
        front[max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)] = \
            room[max(0, dy):h - max(0, -dy), max(0, dx):w - max(0, -dx)]
        seen = solid & (front >= 0)
        face_texture[f][seen] = front[seen] * 4 + f
    for p, (px, py) in enumerate(pillars):
        face_texture[:, py, px] = n_rooms * 4 + p
    grey = rng.uniform(70, 105, size=n_rooms)
    floor_tint = rng.uniform(-10, 10, size=(n_rooms, 3))
    floor = np.stack([grey[:, None] + floor_tint, 0.78 * (grey[:, None] + floor_tint)], 1).astype(np.float32)
    return Layout(solid=solid, room=room, face_texture=face_texture, colour=np.array(colour, np.float32),
                  colour_class=np.array(colour_class, np.int64), pattern=np.array(pattern, np.float32),
                  depth=np.array(depth, np.float32), gradient=np.array(gradient, np.float32), floor=floor,
                  ceiling=np.array(rng.uniform(150, 185) + rng.uniform(-8, 8, 3), np.float32),
                  pillars=np.array(pillars, np.int64).reshape(-1, 2), rooms=n_rooms)


def _doors(rng: np.random.Generator, rows: int, cols: int, heights: np.ndarray, widths: np.ndarray,
           y0: np.ndarray, x0: np.ndarray, solid: np.ndarray, room: np.ndarray) -> None:
    """Carve doorways (1–2 cells) through shared walls: a random spanning tree of the room grid, plus a third of
    the remaining shared walls."""
    edges = [((r, c), (r, c + 1)) for r in range(rows) for c in range(cols - 1)]
    edges += [((r, c), (r + 1, c)) for r in range(rows - 1) for c in range(cols)]
    parent = list(range(rows * cols))

    def find(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for e in rng.permutation(len(edges)):
        (r, c), (r2, c2) = edges[int(e)]
        a, b = find(r * cols + c), find(r2 * cols + c2)
        if a == b and rng.random() > 1 / 3:
            continue
        parent[a] = b
        vertical = r2 == r  # rooms side by side: the shared wall is a column of cells
        length = int(heights[r] if vertical else widths[c])
        width = 2 if length >= 6 and rng.random() < 0.5 else 1
        at = int(rng.integers(1, length - width))  # not flush with a corner
        if vertical:
            x, ys = int(x0[c2] - 1), slice(int(y0[r]) + at, int(y0[r]) + at + width)
            solid[ys, x], room[ys, x] = False, r * cols + c
        else:
            y, xs = int(y0[r2] - 1), slice(int(x0[c]) + at, int(x0[c]) + at + width)
            solid[y, xs], room[y, xs] = False, r * cols + c


def _pillars(rng: np.random.Generator, rows: int, cols: int, heights: np.ndarray, widths: np.ndarray,
             y0: np.ndarray, x0: np.ndarray, solid: np.ndarray, room: np.ndarray) -> list[tuple[int, int]]:
    """0–2 one-cell pillars per room, a cell clear of its walls and of each other."""
    out: list[tuple[int, int]] = []
    for r in range(rows):
        for c in range(cols):
            for _ in range(int(rng.choice(3, p=(0.3, 0.4, 0.3)))):
                px = int(x0[c] + rng.integers(1, widths[c] - 1))
                py = int(y0[r] + rng.integers(1, heights[r] - 1))
                if any(abs(px - qx) <= 1 and abs(py - qy) <= 1 for qx, qy in out):
                    continue
                solid[py, px], room[py, px] = True, -1
                out.append((px, py))
    return out
