"""Rooms' eval extras: motion fidelity (an inverse-dynamics probe reads yaw and translation from imagined views),
revisit consistency (a 360° turn in place, out-and-back paths) and layout persistence over 30-second rollouts.

The metric functions take real and imagined frames as arrays, so they can be checked on the real world itself
(imagined = real: revisit PSNR is infinite, motion fidelity and persistence are 1)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from worldsim.actions import ActionSpec
from worldsim.errors import ConfigError
from worldsim.eval_generic import Episode, frame_metrics
from worldsim.eval_metrics import json_float, progress_bar, rollout
from worldsim.image_metrics import mse, psnr_from_mse
from worldsim.probe import InverseDynamicsProbe
from worldsim.record import RandomPolicy

from .detector import AGREEMENT, agreement
from .env import ROOMS_ACTIONS, TURN_STEPS, Rooms, pose_motion
from .policies import RoomsPolicy, env_action, out_and_back, phrase_of

MOTION = ActionSpec.vector([-1.0] * 3, [1.0] * 3)  # what the probe reads: (yaw rate, forward, strafe) per step
COMPONENTS = ("yaw", "forward", "strafe")
PROBE_SEED_OFFSET = 1_000_000  # the probe trains on world seeds seed + 1e6 + j, apart from the held-out ones
PROBE_EPISODE_STEPS = 64
REVISIT_LENGTHS = (8, 16, 32)
LONG_HORIZON = 480  # 30 s at 16 fps
MIN_SIZE = 16


@dataclass
class Clip:
    """A real Rooms clip: frames (T, H, W, 3) uint8; actions: T-1 model actions (phrases, or float32 (3,)
    vectors); poses: (T, 3) (x, y, yaw); world_seed: the reset seed."""

    frames: np.ndarray
    actions: list[Any]
    poses: np.ndarray
    world_seed: int

    @property
    def motion(self) -> np.ndarray:
        """(T-1, 3) the head's motion per step, (yaw, forward, strafe) in units of the maximum turn and speed:
        the command, except where a wall stopped the head."""
        return np.array([np.clip(pose_motion(p, q), -1, 1) for p, q in zip(self.poses[:-1], self.poses[1:],
                                                                              strict=True)]).reshape(-1, 3)


Plan = Callable[[Rooms, np.random.Generator], list[np.ndarray]]


def play(size: int, vector: bool, world_seed: int, steps: int, plan: Plan | None = None,
         policy: Any = None) -> Clip:
    """Rooms reset with `world_seed` at `size` px, stepped `steps` times by `policy` (default: the default data
    policy, rng = default_rng(world_seed), as the generic eval draws its held-out episodes); then, with `plan`, the
    commands plan(env, rng) returns, from the pose reached. In text mode the model's actions are phrases."""
    env = Rooms(render_mode="rgb_array", size=size, action_mode="vector" if vector else "text")
    policy, rng = policy or RoomsPolicy(), np.random.default_rng(world_seed)
    obs, info = env.reset(seed=world_seed)
    frames, actions, poses = [obs], [], [info["pose"]]

    def one(action: Any) -> None:
        nonlocal obs, info
        actions.append(action)
        obs, _, _, _, info = env.step(action)
        frames.append(obs)
        poses.append(info["pose"])

    for _ in range(steps):
        one(policy(env, obs, info, rng))
    for command in plan(env, rng) if plan is not None else []:
        one(env_action(env, command))
    env.close()
    return Clip(np.stack(frames), actions, np.array(poses), world_seed)


def turn_plan(env: Rooms, rng: np.random.Generator) -> list[np.ndarray]:
    """A full turn in place, left or right at the full yaw rate."""
    sign = float(rng.choice([-1.0, 1.0]))
    return [np.array([sign, 0.0, 0.0])] * TURN_STEPS


def out_and_back_plan(steps: int) -> Plan:
    """An out-and-back path of `steps` commands that returns to the pose it left (`policies.out_and_back`)."""
    return lambda env, rng: out_and_back(env, steps, rng, env.action_mode == "vector")


# ----- motion fidelity ----------------------------------------------------------------------------------------
def fit_motion_probe(size: int, vector: bool, seed: int, transitions: int = 4096, steps: int = 1000
                     ) -> InverseDynamicsProbe:
    """An inverse-dynamics probe trained on `transitions` real transitions (default policy, world seeds
    seed + 1e6, +1, …) to read the head's real motion per step: (yaw change, forward, strafe) in units of the
    world's maximum turn and speed (`pose_motion`, so a bump reads as no motion). Every other episode is driven by
    uniformly random actions instead of the data policy, so that rare motions such as strafing are learnt too."""
    before: list[np.ndarray] = []
    after: list[np.ndarray] = []
    targets: list[np.ndarray] = []
    j = 0
    while len(targets) < transitions:
        clip = play(size, vector, seed + PROBE_SEED_OFFSET + j, PROBE_EPISODE_STEPS,
                    policy=RandomPolicy() if j % 2 else None)
        before.extend(clip.frames[:-1])
        after.extend(clip.frames[1:])
        targets.extend(clip.motion)
        j += 1
    return InverseDynamicsProbe.fit(np.stack(before[:transitions]), np.stack(after[:transitions]),
                                    np.stack(targets[:transitions]), MOTION, steps=steps, seed=seed)


def r2_by_component(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """R² of (N, d) predictions against (N, d) targets per component; NaN where the targets do not vary."""
    total = ((target - target.mean(0)) ** 2).sum(0)
    resid = ((target - pred) ** 2).sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total > 1e-12, 1 - resid / total, np.nan)


def pooled_r2(pred: np.ndarray, target: np.ndarray) -> float:
    """1 - (squared error summed over all components) / (variance of the targets summed over all components): R² of
    the motion as a whole, in which a component that rarely moves (strafing) weighs as little as it varies; NaN
    when nothing varies."""
    total = float(((target - target.mean(0)) ** 2).sum())
    return 1 - float(((target - pred) ** 2).sum()) / total if total > 1e-12 else math.nan


def motion_fidelity(probe: InverseDynamicsProbe, real: tuple[np.ndarray, np.ndarray],
                    imagined: tuple[np.ndarray, np.ndarray], motion: np.ndarray) -> dict[str, Any]:
    """The probe's R² on imagined transitions over its R² on the real transitions they stand for, both against the
    motion the real world made under the commanded actions: pooled over the components (`pooled_r2`), and per
    component.

    Args:
        real, imagined: (frames before, frames after), each uint8 (N, H, W, 3); imagined under the same actions.
        motion: (N, 3) the real head motion (yaw, forward, strafe) in [-1, 1]: a phrase's unit command (or the
            vector command), except where a wall stopped the head.
    """
    target = np.asarray(motion, np.float64)
    p_real = np.asarray(probe.predict(*real), np.float64)
    p_imag = np.asarray(probe.predict(*imagined), np.float64)
    r_real, r_imag = r2_by_component(p_real, target), r2_by_component(p_imag, target)
    real_mean, imag_mean = pooled_r2(p_real, target), pooled_r2(p_imag, target)

    def ratio(a: float, b: float) -> float | None:
        return a / b if math.isfinite(a) and math.isfinite(b) and b > 0 else None

    return {"motion_fidelity": json_float(ratio(imag_mean, real_mean)),
            "motion_fidelity_probe_real": json_float(real_mean),
            "motion_fidelity_probe_imagined": json_float(imag_mean),
            "motion_fidelity_by_component": {c: json_float(ratio(float(i), float(r)))
                                             for c, i, r in zip(COMPONENTS, r_imag, r_real, strict=True)},
            "motion_fidelity_probe_real_by_component": {c: json_float(float(r))
                                                        for c, r in zip(COMPONENTS, r_real, strict=True)},
            "motion_fidelity_transitions": len(target)}


def open_loop_pairs(clips: Sequence[Clip], gens: Sequence[np.ndarray], context: int, horizon: int
                    ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], np.ndarray]:
    """Real and imagined transitions of open-loop rollouts, and the real motion: imagined transition k is (imagined
    frame k-1, imagined frame k), imagined frame 0 being the last real context frame."""
    last = context - 1
    real = (np.concatenate([c.frames[last:last + horizon] for c in clips]),
            np.concatenate([c.frames[last + 1:last + 1 + horizon] for c in clips]))
    imagined = (np.concatenate([np.concatenate([c.frames[last:last + 1], g[:-1]]) for c, g in zip(clips, gens,
                                                                                                  strict=True)]),
                np.concatenate(list(gens)))
    return real, imagined, np.concatenate([c.motion[last:last + horizon] for c in clips])


# ----- revisits -----------------------------------------------------------------------------------------------
def revisit_psnr(targets: Sequence[np.ndarray], views: Sequence[np.ndarray]) -> float | None:
    """PSNR (dB) of the mean squared error over paths between views on return and the real ones; None (JSON's
    stand-in for +inf) when every view is exact."""
    return json_float(psnr_from_mse(mse(np.stack(views), np.stack(targets)).mean()))


def revisit_metrics(paths: dict[str, list[tuple[Clip, np.ndarray]]], context: int) -> dict[str, Any]:
    """Per path kind: PSNR of the imagined view on return (the last imagined frame) against the real starting view
    (turns) or the real view on return (out-and-back), and the copy baseline (the real view one step before the
    return, held); both in dB, None when exact (infinite).

    Args:
        paths: kind ("turn_360", "out_and_back_8", …) → [(real clip: context frames then the path, imagined frames
            of the path)].
    """
    out: dict[str, Any] = {}
    for kind, rows in paths.items():
        target = [c.frames[context - 1] if kind == "turn_360" else c.frames[-1] for c, _ in rows]
        out[f"revisit_{kind}_psnr"] = revisit_psnr(target, [g[-1] for _, g in rows])
        out[f"revisit_{kind}_copy_baseline_psnr"] = revisit_psnr(target, [c.frames[-2] for c, _ in rows])
    return out


# ----- persistence --------------------------------------------------------------------------------------------
def persistence(real: Sequence[np.ndarray], imagined: Sequence[np.ndarray], held: Sequence[np.ndarray]
                ) -> dict[str, Any]:
    """The share of imagined frames whose layout (the detector's wall colour per column at the horizon) agrees with
    the real frame at the same step, hence the same pose, in at least AGREEMENT of the columns.

    Args:
        real, imagined: per rollout (T, H, W, 3) uint8, real and imagined frames at the same steps.
        held: per rollout the last real context frame, held as a copy baseline.
    """
    agree = np.array([[agreement(g, r) for g, r in zip(gs, rs, strict=True)] for gs, rs in zip(imagined, real,
                                                                                              strict=True)])
    copy = np.array([[agreement(h, r) for r in rs] for h, rs in zip(held, real, strict=True)])
    ok = agree >= AGREEMENT
    return {"persistence": float(ok.mean()), "persistence_column_agreement": float(agree.mean()),
            "persistence_by_rollout": [float(v) for v in ok.mean(1)],
            "persistence_copy_baseline": float((copy >= AGREEMENT).mean()), "persistence_threshold": AGREEMENT}


# ----- the extras -----------------------------------------------------------------------------------------------
def cannot_measure(model: Any) -> str | None:
    """Why Rooms' extras cannot measure `model` (frame size, action kind or vocabulary), or None when they can."""
    cfg, spec = model.config, model.action_spec
    if cfg.height != cfg.width or cfg.height < MIN_SIZE:
        return (f"Rooms renders square frames of at least {MIN_SIZE}×{MIN_SIZE}; model {cfg.name!r} makes "
                f"{cfg.height}×{cfg.width} frames.")
    if spec.is_vector:
        if spec.dim != 3 or max(spec.low) > -1 or min(spec.high) < 1:
            return (f"Rooms' vector actions are (yaw rate, forward, strafe) in [-1, 1]³; model {cfg.name!r} takes "
                    f"{spec.describe()}.")
        return None
    missing = [a for a in ROOMS_ACTIONS if a not in spec.vocabulary]
    if missing:
        return (f"model {cfg.name!r} has no actions {missing} in its vocabulary {list(spec.vocabulary)}; Rooms' "
                f"phrases are {list(ROOMS_ACTIONS)}.")
    return None


def _same(held_out: Any, clips: list[Clip], imagined: Any) -> bool:
    """Whether the generic eval's held-out episodes are these clips (then its open-loop rollouts are reused)."""
    if held_out is None or imagined is None or len(held_out) != len(clips) or len(imagined) != len(clips):
        return False
    return all(np.array_equal(ep.frames, c.frames) and len(ep.actions) == len(c.actions)
               and all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(ep.actions, c.actions,
                                                                                    strict=True))
               for ep, c in zip(held_out, clips, strict=True))


def _targets(r: dict[str, Any], horizon: int) -> dict[str, Any]:
    """The quality targets, each {value, op, threshold, pass}; an infinite revisit PSNR passes."""
    turn = r["revisit_turn_360_psnr"]
    k = r["revisit_table"][f"prediction_k{horizon}"]["psnr"]
    gap = math.inf if turn is None else (turn - k if k is not None else -math.inf)
    rows = {"motion_fidelity": (r["motion_fidelity"], ">=", 0.9),
            f"revisit_turn_360_psnr_minus_psnr_k{horizon}": (gap, ">=", -2.0)}
    return {name: {"value": json_float(v), "op": op, "threshold": t, "pass": bool(v is not None and v >= t)}
            for name, (v, op, t) in rows.items()}


def eval_extras(model: Any, *, episodes: int = 32, seed: int = 10_000, horizon: int = 16, context: int = 2,
                session: dict[str, Any] | None = None, progress: bool = True, held_out: Any = None,
                imagined: Any = None, motion_probe_transitions: int = 4096, motion_probe_steps: int = 1000,
                revisit_paths: int = 8,
                revisit_lengths: Sequence[int] = REVISIT_LENGTHS, long_horizon: int = LONG_HORIZON,
                long_rollouts: int = 4, **_options: Any) -> dict[str, Any]:
    """Rooms' metrics for `worldsim eval`; deterministic for fixed arguments. World seeds seed + i (i < episodes)
    as the generic eval's held-out episodes (whose open-loop rollouts are reused when they are these clips).

    Returns {"extras_skipped": reason} for a model these metrics cannot measure (see `cannot_measure`), else:
        - motion_fidelity: an inverse-dynamics probe trained on `motion_probe_transitions` real transitions (world
          seeds seed + 1e6 + j; `motion_probe_steps` steps) to read the head's motion per step (yaw, forward,
          strafe); its R² (pooled over components) on imagined open-loop transitions over its R² on the real ones,
          both against the motion the real world made under the commanded actions (a phrase is a unit command;
          a wall stops it); per component too; the R²s themselves as _probe_real and _probe_imagined.
        - revisit_turn_360_psnr: a full turn in place (24 steps) after `context` real frames; PSNR (dB, of the mean
          squared error over min(episodes, revisit_paths) paths; None = infinite) of the imagined view after the
          turn against the real starting view. revisit_out_and_back_{8,16,32}_psnr: paths out and back to the
          same pose (no wall touched), the imagined view on return against the real one. Each with
          _copy_baseline_psnr (the real view one step before the return, held), and all of them beside the
          ordinary open-loop PSNR at k = 1 and k = horizon (and its copy baseline) in revisit_table.
        - persistence: over min(episodes, long_rollouts) rollouts of `long_horizon` frames (480 = 30 s at 16 fps)
          under the data policy's actions, the share of imagined frames whose layout (`detector.horizon_colours`,
          the wall colour per column at the horizon) matches the real frame at the same step in ≥ 75% of the
          columns; the mean column agreement; per rollout; and the same share for the last context frame held.
        - targets, targets_passed; generated_frames and generation_s.
    """
    reason = cannot_measure(model)
    if reason is not None:
        return {"extras_skipped": reason}
    for name, value, low in (("motion_probe_transitions", motion_probe_transitions, 2),
                             ("motion_probe_steps", motion_probe_steps, 1),
                             ("revisit_paths", revisit_paths, 1), ("long_horizon", long_horizon, 1),
                             ("long_rollouts", long_rollouts, 1), ("context", context, 1), ("horizon", horizon, 1)):
        if value < low:
            raise ConfigError(f"Rooms eval extras: {name} must be >= {low}, got {value}.")
    if not revisit_lengths or any(n < 2 or n % 2 for n in revisit_lengths):
        raise ConfigError(f"Rooms eval extras: revisit_lengths must be even path lengths >= 2, got "
                          f"{list(revisit_lengths)}.")
    size, vector = model.config.height, model.action_spec.is_vector
    gen_frames, gen_seconds = 0, 0.0

    def imagine(clip: Clip, actions: Sequence[Any], i: int, bar: Any) -> np.ndarray:
        nonlocal gen_frames, gen_seconds
        frames, secs = rollout(model, clip.frames[:context], clip.actions[:context - 1], actions, seed + i,
                               session, bar)
        gen_frames, gen_seconds = gen_frames + len(frames), gen_seconds + secs
        return frames

    clips = [play(size, vector, seed + i, context + horizon - 1) for i in range(episodes)]
    if _same(held_out, clips, imagined):
        gens = [np.asarray(g) for g in imagined]
    else:
        with progress_bar(episodes * horizon, "rooms: open loop", progress, "frame") as bar:
            gens = [imagine(c, c.actions[context - 1:], i, bar) for i, c in enumerate(clips)]
    probe = fit_motion_probe(size, vector, seed, motion_probe_transitions, motion_probe_steps)
    result: dict[str, Any] = motion_fidelity(probe, *open_loop_pairs(clips, gens, context, horizon))

    plans: dict[str, Plan] = {"turn_360": turn_plan, **{f"out_and_back_{n}": out_and_back_plan(n)
                                                        for n in revisit_lengths}}
    n_paths = min(episodes, revisit_paths)
    paths: dict[str, list[tuple[Clip, np.ndarray]]] = {kind: [] for kind in plans}
    with progress_bar(n_paths * len(plans), "rooms: revisits", progress, "path") as bar:
        for i in range(n_paths):
            for kind, plan in plans.items():
                clip = play(size, vector, seed + i, context - 1, plan)
                paths[kind].append((clip, imagine(clip, clip.actions[context - 1:], i, None)))
                bar.update(1)
    result.update(revisit_metrics(paths, context))
    reference = frame_metrics([Episode(c.frames, c.actions, c.world_seed) for c in clips], gens, context, horizon)
    table = {kind: {"psnr": result[f"revisit_{kind}_psnr"],
                    "copy_baseline_psnr": result[f"revisit_{kind}_copy_baseline_psnr"]} for kind in plans}
    for k in sorted({1, horizon}):
        table[f"prediction_k{k}"] = {"psnr": reference[f"psnr_k{k}"],
                                     "copy_baseline_psnr": reference[f"copy_baseline_psnr_k{k}"]}
    result.update({"revisit_table": table, "revisit_paths": n_paths, "revisit_turn_steps": TURN_STEPS})

    n_long = min(episodes, long_rollouts)
    real, fake, held = [], [], []
    with progress_bar(n_long * long_horizon, "rooms: long rollouts", progress, "frame") as bar:
        for i in range(n_long):
            clip = play(size, vector, seed + i, context - 1 + long_horizon)
            fake.append(imagine(clip, clip.actions[context - 1:], i, bar))
            real.append(clip.frames[context:])
            held.append(clip.frames[context - 1])
    result.update(persistence(real, fake, held))
    result.update({"persistence_horizon": long_horizon, "persistence_rollouts": n_long,
                   "persistence_seconds": long_horizon / Rooms.metadata["render_fps"]})
    result["targets"] = _targets(result, horizon)
    result["targets_passed"] = sum(t["pass"] for t in result["targets"].values())
    result["generated_frames"], result["generation_s"] = gen_frames, gen_seconds
    return result


# Hooks other tools reach through the registry: worldsim.worlds.get("rooms").extras[name].
EXTRAS = {"play": play, "turn_plan": turn_plan, "out_and_back_plan": out_and_back_plan, "phrase_of": phrase_of,
          "revisit_lengths": REVISIT_LENGTHS}
