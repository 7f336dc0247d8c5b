"""Pieces of `worldsim eval`: held-out PushWorld clips, metric functions, implausible edits, the filmstrip."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import PUSHWORLD_ACTIONS
from .envs.pushworld import BLOCK_COLOUR, PushWorld, detect_objects
from .errors import WorldSimError
from .record import PushWorldPolicy

OBJECTS = ("agent", "block")
EDIT_KINDS = ("teleport", "wall", "vanish", "recolour")
# Far from every PushWorld colour and from each other (> 140 in RGB L2), so a recoloured block is not "the block".
RECOLOURS = ((220, 0, 220), (0, 220, 220), (235, 235, 235), (220, 0, 0))
DIRECTIONS = {"move up": (0.0, -1.0), "move down": (0.0, 1.0), "move left": (-1.0, 0.0), "move right": (1.0, 0.0)}
OFF_SCREEN = (-1000.0, -1000.0)  # where a vanished object is drawn (outside the frame: nothing is drawn)
MAX_RESEEDS = 50
FILMSTRIP_STEPS = (0, 1, 2, 4, 8, 16)
FILMSTRIP_EPISODES = 3


@dataclass
class Clip:
    """A real PushWorld clip with the positions the world drew.

    frames: (T, H, W, 3) uint8; actions: T-1 phrases (actions[t] leads from frame t to t+1);
    agent, block: (T, 2) float (x, y) px centres per frame; goal: (2,); world_seed: the reset seed used.
    """

    frames: np.ndarray
    actions: list[str]
    agent: np.ndarray
    block: np.ndarray
    goal: np.ndarray
    world_seed: int

    def positions(self, t: int) -> dict[str, np.ndarray]:
        return {"agent": self.agent[t], "block": self.block[t]}


def play(size: int, world_seed: int, steps: int) -> tuple[Clip, np.random.Generator, bool]:
    """Run PushWorldPolicy (rng = default_rng(world_seed)) in PushWorld reset with `world_seed` for up to `steps` steps.

    Stops early when the episode terminates. Returns the clip, the policy's rng (to continue drawing actions)
    and whether it terminated.
    """
    env = PushWorld(size=size, render_mode="rgb_array", action_mode="text")
    policy, rng = PushWorldPolicy(), np.random.default_rng(world_seed)
    obs, info = env.reset(seed=world_seed)
    frames, actions, agent, block = [obs], [], [info["agent_pos"]], [info["block_pos"]]
    terminated = False
    for _ in range(steps):
        action = policy(env, obs, info, rng)
        obs, _, terminated, _, info = env.step(action)
        frames.append(obs)
        actions.append(action)
        agent.append(info["agent_pos"])
        block.append(info["block_pos"])
        if terminated:
            break
    env.close()
    clip = Clip(np.stack(frames), actions, np.array(agent), np.array(block), np.array(info["goal_pos"]), world_seed)
    return clip, rng, terminated


def held_out_clip(size: int, seed: int, index: int, episodes: int, length: int) -> Clip:
    """Episode `index` of the held-out set: `length` frames of world seed `seed + index`.

    If that episode terminates (block on goal) before `length` frames, world seeds `seed + index + j·episodes`
    (j = 1, 2, …) are tried in turn, so a clip never contains the post-success reset the training data lacks.
    """
    for j in range(MAX_RESEEDS):
        clip, _, _ = play(size, seed + index + j * episodes, length - 1)
        if len(clip.frames) == length:
            return clip
    raise WorldSimError(f"{MAX_RESEEDS} PushWorld episodes from seed {seed + index} all ended within {length} "
                        "frames; use a shorter --horizon.")


def long_actions(size: int, world_seed: int, steps: int) -> tuple[Clip, list[str]]:
    """`steps` actions for a long rollout: PushWorldPolicy in the real world; after the real episode terminates,
    random actions that repeat the previous one with probability 0.8 (the policy's "random" mode) drawn from the
    same rng. Returns the real clip (as far as it went) and the actions."""
    clip, rng, _ = play(size, world_seed, steps)
    actions = list(clip.actions)
    previous = PUSHWORLD_ACTIONS.index(actions[-1]) if actions else 4
    while len(actions) < steps:
        previous = previous if rng.random() < 0.8 else int(rng.integers(len(PUSHWORLD_ACTIONS)))
        actions.append(PUSHWORLD_ACTIONS[previous])
    return clip, actions


# ----- position metrics ---------------------------------------------------------------------------------------
def miss_penalty(height: int, width: int) -> float:
    """The error charged for an object the detector cannot find: half the frame diagonal (45.25 px at 64×64)."""
    return math.hypot(height, width) / 2


def detect(frame: np.ndarray) -> dict[str, np.ndarray | None]:
    """{"agent": (2,) or None, "block": (2,) or None} from PushWorld's colour detector."""
    found = detect_objects(frame)
    return {name: None if found[f"{name}_pos"] is None else np.array(found[f"{name}_pos"]) for name in OBJECTS}


def object_errors(found: dict[str, np.ndarray | None], true: dict[str, np.ndarray],
                  penalty: float) -> dict[str, float]:
    """Euclidean error in px per object; a missed object costs `penalty`."""
    return {name: penalty if found[name] is None else float(np.linalg.norm(found[name] - true[name]))
            for name in OBJECTS}


def moved_as_commanded(before: np.ndarray | None, after: np.ndarray | None, action: str) -> bool:
    """True when the displacement's component along the commanded direction is > 0.5 px and larger than the
    perpendicular component. A missing detection (None) is a failure."""
    if before is None or after is None or action not in DIRECTIONS:
        return False
    d, u = after - before, np.array(DIRECTIONS[action])
    along = float(d @ u)
    across = abs(float(d[0] * u[1] - d[1] * u[0]))
    return along > 0.5 and along > across


def lost_for_good_at(seen: np.ndarray) -> int | None:
    """The first frame from which an object is never detected again (None when it is seen in the last frame)."""
    seen = np.asarray(seen, bool)
    if seen.size == 0 or seen[-1]:
        return None
    found = np.flatnonzero(seen)
    return int(found[-1] + 1) if found.size else 0


def auroc(positives: np.ndarray | list[float], negatives: np.ndarray | list[float]) -> float | None:
    """Area under the ROC curve for 'positive scores higher', from average ranks (Mann–Whitney U); ties count ½.

    Returns None when either set is empty.
    """
    pos, neg = np.asarray(positives, np.float64).ravel(), np.asarray(negatives, np.float64).ravel()
    if len(pos) == 0 or len(neg) == 0:
        return None
    if not (np.isfinite(pos).all() and np.isfinite(neg).all()):
        raise ValueError("auroc needs finite scores; received NaN or inf.")
    _, inverse, counts = np.unique(np.concatenate([pos, neg]), return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    ranks = (ends - (counts - 1) / 2.0)[inverse]  # 1-based ranks, tied values share their average rank
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2.0
    return float(u / (len(pos) * len(neg)))


# ----- implausible continuations -----------------------------------------------------------------------------
def render(world: PushWorld, agent, block, goal) -> np.ndarray:
    """The frame PushWorld draws with objects at the given centres (anywhere, walls and off-screen included)."""
    world.agent, world.block, world.goal = (np.asarray(p, np.float64) for p in (agent, block, goal))
    frame = world.render()
    assert frame is not None  # the world is made with render_mode="rgb_array"
    return frame


def _teleport_offset(world: PushWorld, clip: Clip, k: int, name: str, rng: np.random.Generator) -> np.ndarray:
    """An offset that puts `name` at a random place on the floor ≥ 20 px (at 64) from where it is at frame k and
    clear of the other object."""
    s = world.size / 64
    extent = world.agent_radius if name == "agent" else world.block_half
    here, other = clip.positions(k)[name], clip.positions(k)["block" if name == "agent" else "agent"]
    clear = world.agent_radius + world.block_half * math.sqrt(2) + 2 * s
    best, best_far = here, -1.0
    for _ in range(200):
        there = rng.uniform(world.lo + extent, world.hi - extent, size=2)
        far = float(np.linalg.norm(there - here))
        if np.linalg.norm(there - other) > clear and far > best_far:
            best, best_far = there, far
            if far >= 20 * s:
                break
    return best - here


def implausible_clip(kind: str, clip: Clip, k: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """A copy of `clip.frames` made implausible from frame k on; frames before k are untouched.

    kinds: "teleport" (agent or block jumps ≥ 20 px to a random free place and keeps the offset), "wall" (agent or
    block is moved into the middle of the nearest wall), "vanish" (agent or block is no longer drawn: floor shows),
    "recolour" (the block's pixels get one of RECOLOURS). Frames are redrawn by PushWorld's own renderer, so the
    only change is the edit. Returns (frames (T, H, W, 3) uint8, {"kind", "object", "k", "locations", ...}):
    "locations" are the (x, y) px places where frame k changed: where the object was and, for teleport and wall,
    where it went.
    """
    if kind not in EDIT_KINDS:
        raise ValueError(f"unknown edit kind {kind!r}; expected one of {EDIT_KINDS}.")
    if not 0 < k < len(clip.frames):
        raise ValueError(f"edit frame k={k} must be in [1, {len(clip.frames) - 1}] for a clip of "
                         f"{len(clip.frames)} frames.")
    world = PushWorld(size=clip.frames.shape[1], render_mode="rgb_array")
    name = "block" if kind == "recolour" else str(rng.choice(OBJECTS))
    paths = {"agent": clip.agent[k:].copy(), "block": clip.block[k:].copy()}
    info: dict = {"kind": kind, "object": name, "k": k}
    if kind == "teleport":
        offset = _teleport_offset(world, clip, k, name, rng)
        paths[name] += offset
        info["offset"] = [float(v) for v in offset]
    elif kind == "wall":
        here = paths[name][0]
        gaps = [here[0], world.size - 1 - here[0], here[1], world.size - 1 - here[1]]  # left, right, top, bottom
        side = int(np.argmin(gaps))
        axis, centre = side // 2, world.wall / 2 - 0.5 if side % 2 == 0 else world.size - world.wall / 2 - 0.5
        paths[name][:, axis] = centre
        info["wall"] = ("left", "right", "top", "bottom")[side]
    elif kind == "vanish":
        paths[name][:] = OFF_SCREEN
    before, after = clip.positions(k)[name], paths[name][0]
    places = (before, after) if kind in ("teleport", "wall") else (before,)
    info["locations"] = [[float(v) for v in p] for p in places]
    out = clip.frames.copy()
    colour = np.array(RECOLOURS[int(rng.integers(len(RECOLOURS)))], np.uint8) if kind == "recolour" else None
    for j in range(len(paths["agent"])):
        frame = render(world, paths["agent"][j], paths["block"][j], clip.goal)
        if colour is not None:
            frame[(frame == np.array(BLOCK_COLOUR, np.uint8)).all(-1)] = colour
        out[k + j] = frame
    if colour is not None:
        info["colour"] = [int(c) for c in colour]
    world.close()
    return out, info


# ----- picture -------------------------------------------------------------------------------------------------
def save_filmstrip(path: str | Path, clips: list[Clip], gens: list[np.ndarray], context: int,
                   title: str) -> Path:
    """Per episode (up to 3) a row of real frames at steps 0, 1, 2, 4, 8, 16 above the imagined ones, as a PNG.

    Step 0 is the last context frame (given to both rows); gens[e]: (horizon, H, W, 3) uint8 frames imagined after
    clips[e].frames[:context].
    """
    from matplotlib.figure import Figure  # no pyplot: no global backend state

    horizon = len(gens[0])
    steps = [k for k in FILMSTRIP_STEPS if k <= horizon]
    n = min(len(clips), FILMSTRIP_EPISODES)
    fig = Figure(figsize=(1.1 * len(steps) + 0.9, 2.2 * n + 0.5), dpi=90)
    axes = fig.subplots(2 * n, len(steps), squeeze=False)
    for e in range(n):
        last = context - 1
        for c, k in enumerate(steps):
            real = clips[e].frames[last + k]
            fake = clips[e].frames[last] if k == 0 else gens[e][k - 1]
            for r, image in ((2 * e, real), (2 * e + 1, fake)):
                ax = axes[r, c]
                ax.imshow(image, interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                if r == 0:
                    ax.set_title(f"step {k}", fontsize=8)
            axes[2 * e, 0].set_ylabel(f"ep {e}\nreal", fontsize=8)
            axes[2 * e + 1, 0].set_ylabel(f"ep {e}\nmodel", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
