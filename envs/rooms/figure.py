"""The picture of docs/rooms.md: a full turn in place and a walk, frame by frame, beside the map with the path.

    python -m worldsim.envs.rooms.figure docs/rooms.png
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from .env import TURN_STEPS, Rooms
from .layout import FACES, Layout
from .policies import POLICIES

STRIP = 9  # frames shown per row


def draw_map(ax, layout: Layout, path: np.ndarray, turn_at: tuple[float, float, float]) -> None:
    """The map seen from above (y up): floors tinted by room, each wall face drawn in its texture's colour, the
    walk's path with its heading every few steps, and where the turn happens."""
    h, w = layout.shape
    floor = np.where(layout.solid[..., None], 40.0, layout.floor[np.maximum(layout.room, 0), 0] * 1.6)
    ax.imshow(np.clip(floor, 0, 255).astype(np.uint8), origin="lower", extent=(0, w, 0, h), interpolation="nearest")
    for f, (dx, dy) in enumerate(FACES):
        for y, x in np.argwhere(layout.face_texture[f] >= 0):
            colour = layout.colour[layout.face_texture[f, y, x]] / 255
            cx, cy = x + 0.5 + dx / 2, y + 0.5 + dy / 2  # the face's centre, its segment across it
            ax.plot([cx - abs(dy) / 2, cx + abs(dy) / 2], [cy - abs(dx) / 2, cy + abs(dx) / 2], color=colour, lw=2.5,
                    solid_capstyle="butt")
    ax.plot(path[:, 0], path[:, 1], color="white", lw=1.2)
    for x, y, yaw in path[::6]:
        ax.arrow(x, y, 0.5 * math.cos(yaw), 0.5 * math.sin(yaw), color="white", head_width=0.25, lw=0.8)
    ax.plot(*turn_at[:2], "o", ms=9, mfc="none", mec="yellow", mew=1.5)
    ax.set_xlim(0, w)
    ax.set_ylim(0, h)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title("map: walk (white), turn in place (yellow)", fontsize=8)


def save(path: str | Path, seed: int = 5, size: int = 64) -> Path:
    """Render the figure for the map of `seed` at `size` px frames and save it as a PNG."""
    from matplotlib.figure import Figure  # no pyplot: no global backend state

    env = Rooms(render_mode="rgb_array", size=size, action_mode="text")
    start, info = env.reset(seed=seed)
    turn_at = info["pose"]
    turn = [start] + [env.step("turn left")[0] for _ in range(TURN_STEPS)]
    policy, rng = POLICIES["rooms-walk"](), np.random.default_rng(seed)
    obs, info = env.reset(seed=seed)
    walk, poses = [obs], [info["pose"]]
    for _ in range(6 * (STRIP - 1)):
        obs, _, _, _, info = env.step(policy(env, obs, info, rng))
        walk.append(obs)
        poses.append(info["pose"])

    fig = Figure(figsize=(12.5, 3.4), dpi=110)
    grid = fig.add_gridspec(2, STRIP + 4)
    rows = (("turn left ×%d (15° a step)", turn, TURN_STEPS // (STRIP - 1)), ("walk (rooms-walk policy)", walk, 6))
    for r, (title, frames, every) in enumerate(rows):
        for c in range(STRIP):
            ax = fig.add_subplot(grid[r, c])
            ax.imshow(frames[c * every], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"step {c * every}", fontsize=7)
        fig.axes[-STRIP].set_ylabel(title % TURN_STEPS if "%" in title else title, fontsize=7)
    draw_map(fig.add_subplot(grid[:, STRIP:]), env.layout, np.array(poses), turn_at)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="draw docs/rooms.png: a turn, a walk and the map")
    parser.add_argument("out", help="PNG to write")
    parser.add_argument("--seed", type=int, default=5, help="the map's seed")
    args = parser.parse_args()
    print(save(args.out, args.seed))
