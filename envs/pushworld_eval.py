"""PushWorld's eval extras: object positions in open-loop rollouts, object persistence in long rollouts, and
plausibility of implausible edits (teleports, walls, vanishing, recolouring), on held-out PushWorld clips."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from worldsim.errors import ConfigError, WorldSimError
from worldsim.eval_metrics import auroc, json_float, lost_for_good_at, progress_bar, rollout, score_clips
from worldsim.plausibility import hottest_patch, judge

from .pushworld import BLOCK_COLOUR, PUSHWORLD_ACTIONS, PushWorld, detect_objects
from .pushworld_policies import PushWorldPolicy

OBJECTS = ("agent", "block")
EDIT_KINDS = ("teleport", "wall", "vanish", "recolour")
# Far from every PushWorld colour and from each other (> 140 in RGB L2), so a recoloured block is not "the block".
RECOLOURS = ((220, 0, 220), (0, 220, 220), (235, 235, 235), (220, 0, 0))
DIRECTIONS = {"move up": (0.0, -1.0), "move down": (0.0, 1.0), "move left": (-1.0, 0.0), "move right": (1.0, 0.0)}
OFF_SCREEN = (-1000.0, -1000.0)  # where a vanished object is drawn (outside the frame: nothing is drawn)
MAX_RESEEDS = 50
LONG_ROLLOUTS = 4  # long rollouts are the slowest part: by default the first min(episodes, 4) episodes get one
LOCATE_PX = 8.0  # an edit is located when the hottest patch's centre is this close to a place that changed


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


def open_loop_metrics(clips: list[Clip], gens: list[np.ndarray], context: int, horizon: int, penalty: float) -> dict:
    """Position errors per step k, the copy-last-frame baseline, detection rate and controllability by detector.

    clips[i]: real clips of ≥ context + horizon frames; gens[i]: (horizon, H, W, 3) uint8 frames imagined after
    clips[i].frames[:context] under clips[i].actions[context - 1:]; penalty: px charged for a missed object.
    """
    e = len(clips)
    err = {n: np.zeros((e, horizon)) for n in OBJECTS}
    copy = {n: np.zeros((e, horizon)) for n in OBJECTS}
    found = np.zeros((e, horizon, len(OBJECTS)), bool)
    moved, obeyed = 0, 0
    for i, (clip, gen) in enumerate(zip(clips, gens, strict=True)):
        last = context - 1
        held = detect(clip.frames[last])  # what "copy the last context frame" predicts for every k
        previous = held["agent"]
        for k in range(1, horizon + 1):
            t = last + k
            true, det = clip.positions(t), detect(gen[k - 1])
            for n, v in object_errors(det, true, penalty).items():
                err[n][i, k - 1] = v
            for n, v in object_errors(held, true, penalty).items():
                copy[n][i, k - 1] = v
            found[i, k - 1] = [det[n] is not None for n in OBJECTS]
            action = clip.actions[t - 1]
            if action != "stay" and np.linalg.norm(clip.agent[t] - clip.agent[t - 1]) >= 1.0:
                moved += 1
                obeyed += moved_as_commanded(previous, det["agent"], action)
            previous = det["agent"]
    both = (err["agent"] + err["block"]) / 2  # (E, horizon)
    both_copy = (copy["agent"] + copy["block"]) / 2
    out: dict[str, Any] = {}
    for k in sorted({1, horizon}):
        out[f"position_error_px_k{k}"] = float(both[:, k - 1].mean())
        out[f"agent_error_px_k{k}"] = float(err["agent"][:, k - 1].mean())
        out[f"block_error_px_k{k}"] = float(err["block"][:, k - 1].mean())
        out[f"detection_rate_k{k}"] = float(found[:, k - 1].mean())
        out[f"copy_baseline_position_error_px_k{k}"] = float(both_copy[:, k - 1].mean())
    out["position_error_px_by_step"] = [float(v) for v in both.mean(0)]
    out["copy_baseline_position_error_px_by_step"] = [float(v) for v in both_copy.mean(0)]
    out["controllability_detector"] = obeyed / moved if moved else None
    out["controllability_detector_steps"] = moved
    return out


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


def plausibility_metrics(model: Any, clips: list[Clip], real_bpd: np.ndarray, context: int, horizon: int, seed: int,
                         bar: Any) -> dict:
    """Frame-k bits/dim of implausible edits (positives) vs the real clips' frame k (negatives): AUROC; where the
    hottest patch of frame k lies; with a calibrated model, the share of edits and of real frames flagged."""
    scores: dict[str, list[float]] = {kind: [] for kind in EDIT_KINDS}
    located: dict[str, list[bool]] = {kind: [] for kind in EDIT_KINDS}
    flagged: list[bool] = []
    real, wins = [], 0
    h, w = model.config.height, model.config.width
    for i, clip in enumerate(clips):
        rng = np.random.default_rng([seed, i])
        k = int(rng.integers(context, context + horizon))  # first edited frame, after the context frames
        edits = [implausible_clip(kind, clip, k, rng) for kind in EDIT_KINDS]
        report = model.score(np.stack([e[0][:k + 1] for e in edits]), actions=[clip.actions[:k]] * len(edits))
        real.append(float(real_bpd[i, k]))
        for j, (kind, (_, info)) in enumerate(zip(EDIT_KINDS, edits, strict=True)):
            v = float(report.bits_per_dim[j, k])
            scores[kind].append(v)
            wins += bool(v > real_bpd[i, k])
            x, y = hottest_patch(report.surprise[j, k], h, w)
            located[kind].append(min(math.hypot(x - px, y - py) for px, py in info["locations"]) <= LOCATE_PX)
            if report.verdict is not None:
                flagged.append(bool(report.verdict.implausible[j, k]))
        bar.update(1)
    everything = [v for kind in EDIT_KINDS for v in scores[kind]]
    calibration = model.calibration
    false_alarms = None
    if calibration is not None:  # every real frame after the first, at the calibrated threshold
        false_alarms = float(judge(real_bpd, calibration, with_actions=True).implausible[:, 1:].mean())
    return {"plausibility_auroc": auroc(everything, real),
            "plausibility_auroc_by_kind": {kind: auroc(scores[kind], real) for kind in EDIT_KINDS},
            "plausibility_paired_accuracy": wins / len(everything),
            "plausibility_mean_bits_per_dim": {"real": float(np.mean(real)),
                                               **{kind: float(np.mean(v)) for kind, v in scores.items()}},
            "plausibility_localisation": float(np.mean([v for kind in EDIT_KINDS for v in located[kind]])),
            "plausibility_localisation_by_kind": {kind: float(np.mean(v)) for kind, v in located.items()},
            "plausibility_detection_rate": float(np.mean(flagged)) if flagged else None,
            "plausibility_false_alarm_rate": false_alarms,
            "plausibility_threshold_percentile": None if calibration is None else calibration.percentile}


# ----- the extras -----------------------------------------------------------------------------------------------
def _targets(r: dict, horizon: int) -> dict:
    """The quality targets, each {value, op, threshold, pass}."""
    err, base = r[f"position_error_px_k{horizon}"], r[f"copy_baseline_position_error_px_k{horizon}"]
    rows = {f"position_error_px_k{horizon}": (err, "<=", 3.0),
            f"position_error_px_k{horizon}_over_copy_baseline": (err / base if base > 0 else None, "<=", 1 / 3),
            "controllability_detector": (r["controllability_detector"], ">=", 0.95),
            "object_persistence": (r["object_persistence"], ">=", 0.99),
            "plausibility_auroc": (r["plausibility_auroc"], ">=", 0.95),
            "plausibility_localisation": (r["plausibility_localisation"], ">=", 0.9)}
    if r["plausibility_false_alarm_rate"] is not None:
        rows["plausibility_false_alarm_rate"] = (r["plausibility_false_alarm_rate"], "<=", 0.05)
    out = {}
    for name, (value, op, threshold) in rows.items():
        ok = value is not None and (value <= threshold if op == "<=" else value >= threshold)
        out[name] = {"value": json_float(value), "op": op, "threshold": threshold, "pass": bool(ok)}
    return out


def cannot_measure(model: Any) -> str | None:
    """Why PushWorld's extras cannot measure `model` (frame size, vocabulary), or None when they can."""
    cfg = model.config
    if model.action_spec.is_vector:
        return f"PushWorld's actions are phrases; model {cfg.name!r} takes vector actions."
    if cfg.height != cfg.width or cfg.height < 32:
        return (f"PushWorld's detector needs square frames of at least 32×32; model {cfg.name!r} makes "
                f"{cfg.height}×{cfg.width} frames.")
    missing = [a for a in PUSHWORLD_ACTIONS if a not in model.vocabulary]
    if missing:
        return f"model {cfg.name!r} has no actions {missing} in its vocabulary {list(model.vocabulary)}."
    return None


def _reusable(held_out: Any, clips: list[Clip], imagined: Any, real_bpd: Any) -> bool:
    """Whether the generic eval's held-out episodes are these clips (then its rollouts and scores are reused)."""
    if held_out is None or imagined is None or real_bpd is None or len(held_out) != len(clips):
        return False
    return all(np.array_equal(ep.frames, c.frames) and list(ep.actions) == c.actions
               for ep, c in zip(held_out, clips, strict=True))


def eval_extras(model: Any, *, episodes: int = 32, seed: int = 10_000, horizon: int = 16, context: int = 2,
                session: dict[str, Any] | None = None, progress: bool = True, long_horizon: int = 480,
                long_rollouts: int = LONG_ROLLOUTS, held_out: Any = None, imagined: Any = None,
                real_bits_per_dim: Any = None, **_options: Any) -> dict[str, Any]:
    """PushWorld's metrics for `worldsim eval`, on held-out clips `held_out_clip(H, seed, i, episodes, context +
    horizon)`, i < episodes; deterministic for fixed arguments. When the generic eval's held-out episodes are
    exactly these clips, its open-loop rollouts (`imagined`) and per-frame bits/dim are reused.

    Returns {"extras_skipped": reason} for a model these metrics cannot measure (see `cannot_measure`), else:
        - position_error_px_k1 / _k{h}: mean over episodes of the mean over agent and block of the Euclidean
          distance (px) between the object detected (`detect_objects`) in generated frame k and the world's true
          centre; an undetected object costs `miss_penalty_px` (half the frame diagonal, 45.25 px at 64×64).
          agent_/block_error_px_k*, detection_rate_k* (share of objects found), and *_by_step curves too.
        - copy_baseline_position_error_px_k*: the same error for objects detected in the last context frame.
        - controllability_detector: over open-loop steps whose action is a move and whose real agent moved ≥ 1 px,
          the share where the agent detected in consecutive generated frames (the first: the last context frame)
          moved > 0.5 px along the commanded direction and more than across it (a missed agent fails);
          controllability_detector_steps counts those steps.
        - object_persistence: share of frames of min(episodes, long_rollouts) rollouts of `long_horizon` frames in
          which both agent and block are detected (actions: the policy in the real world; after the real episode
          ends, the policy's persistent random actions); also per object, and per rollout the block's share
          (object_persistence_block_by_rollout) and the frame from which it was never seen again
          (block_lost_for_good_at, None when it was seen in the last frame); the same for the agent.
        - plausibility_auroc: per episode one frame k ∈ [context, context + horizon) is drawn and four edited
          copies made (teleport, wall, vanish, recolour; see `implausible_clip`); AUROC of frame k's bits/dim,
          edited clips (positives) vs the real clips' frame k (negatives); per kind, and paired accuracy.
        - plausibility_localisation: share of those edits whose most surprising patch in frame k has its centre
          within 8 px of a place the edit changed; per kind too.
        - plausibility_detection_rate / plausibility_false_alarm_rate (None when the model has no calibration):
          share of edited frames k, and of all real frames after the first, flagged implausible at the model's
          calibrated threshold (`worldsim.plausibility`).
        - targets (each {value, op, threshold, pass}) and targets_passed; long_horizon, long_rollouts,
          miss_penalty_px; generated_frames and generation_s (frames this function imagined, and the seconds).
    """
    reason = cannot_measure(model)
    if reason is not None:
        return {"extras_skipped": reason}
    for name, value in (("long_horizon", long_horizon), ("long_rollouts", long_rollouts)):
        if value < 1:
            raise ConfigError(f"PushWorld eval extras: {name} must be >= 1, got {value}.")
    size = model.config.height
    penalty, length = miss_penalty(size, size), context + horizon
    clips = [held_out_clip(size, seed, i, episodes, length) for i in range(episodes)]
    gen_frames, gen_seconds = 0, 0.0
    if _reusable(held_out, clips, imagined, real_bits_per_dim):
        gens, real_bpd = list(imagined), np.asarray(real_bits_per_dim)
    else:
        with progress_bar(episodes, "eval: score", progress) as bar:
            real_bpd = score_clips(model, [c.frames for c in clips], [c.actions for c in clips], bar)
        gens = []
        with progress_bar(episodes * horizon, "eval: open loop", progress, "frame") as bar:
            for i, clip in enumerate(clips):
                frames, secs = rollout(model, clip.frames[:context], clip.actions[:context - 1],
                                       clip.actions[context - 1:], seed + i, session, bar)
                gens.append(frames)
                gen_frames, gen_seconds = gen_frames + len(frames), gen_seconds + secs
    result: dict[str, Any] = {"miss_penalty_px": penalty, **open_loop_metrics(clips, gens, context, horizon, penalty)}

    n_long = min(episodes, long_rollouts)
    seen = np.zeros((n_long, long_horizon, len(OBJECTS)), bool)
    with progress_bar(n_long * long_horizon, "eval: long rollouts", progress, "frame") as bar:
        for i, clip in enumerate(clips[:n_long]):
            _, actions = long_actions(size, clip.world_seed, context - 1 + long_horizon)
            frames, secs = rollout(model, clip.frames[:context], clip.actions[:context - 1], actions[context - 1:],
                                   seed + i, session, bar)
            gen_frames, gen_seconds = gen_frames + len(frames), gen_seconds + secs
            for j, frame in enumerate(frames):
                seen[i, j] = [p is not None for p in detect(frame).values()]
    with progress_bar(episodes, "eval: plausibility", progress) as bar:
        plausibility = plausibility_metrics(model, clips, real_bpd, context, horizon, seed, bar)
    result.update({
        "object_persistence": float(seen.all(-1).mean()),
        "object_persistence_agent": float(seen[..., 0].mean()),
        "object_persistence_block": float(seen[..., 1].mean()),
        "object_persistence_block_by_rollout": [float(b) for b in seen[..., 1].mean(1)],
        "block_lost_for_good_at": [lost_for_good_at(b) for b in seen[..., 1]],
        "object_persistence_agent_by_rollout": [float(a) for a in seen[..., 0].mean(1)],
        "agent_lost_for_good_at": [lost_for_good_at(a) for a in seen[..., 0]],
        "long_horizon": long_horizon,
        "long_rollouts": n_long,
        **plausibility,
    })
    result["targets"] = _targets(result, horizon)
    result["targets_passed"] = sum(t["pass"] for t in result["targets"].values())
    result["generated_frames"], result["generation_s"] = gen_frames, gen_seconds
    return result


# Hooks other tools reach through the registry: worldsim.worlds.get("pushworld").extras[name].
EXTRAS = {"held_out_clip": held_out_clip, "implausible_clip": implausible_clip, "detect": detect,
          "long_actions": long_actions, "edit_kinds": EDIT_KINDS}
