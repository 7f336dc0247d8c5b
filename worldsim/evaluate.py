"""`worldsim eval`: a world model's quality against the ground-truth PushWorld on held-out seeds."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from .config import PUSHWORLD_ACTIONS
from .errors import ConfigError
from .eval_metrics import (
    EDIT_KINDS,
    OBJECTS,
    Clip,
    auroc,
    detect,
    held_out_clip,
    implausible_clip,
    long_actions,
    lost_for_good_at,
    miss_penalty,
    moved_as_commanded,
    object_errors,
    save_filmstrip,
)
from .plausibility import hottest_patch, judge
from .world_model import WorldModel

logger = logging.getLogger(__name__)

LONG_ROLLOUTS = 4  # long rollouts are the slowest part: by default the first min(episodes, 4) episodes get one
SCORE_BATCH = 8  # clips per scoring pass (larger batches were slower per clip on 2 CPU cores)
LOCATE_PX = 8.0  # an edit is located when the hottest patch's centre is this close to a place that changed


def _bar(total: int, desc: str, progress: bool, unit: str = "ep") -> tqdm:
    return tqdm(total=total, desc=desc, unit=unit, leave=False, disable=not (progress and sys.stderr.isatty()))


def _num(x: Any) -> float | None:
    """A JSON-safe float (None for missing or non-finite)."""
    return None if x is None or not np.isfinite(x) else float(x)


def _score(model: WorldModel, clips: list[np.ndarray], actions: list[list[str]], bar: tqdm | None = None) -> np.ndarray:
    """Per-frame bits/dim (n, T) of n equal-length clips, SCORE_BATCH at a time."""
    out = []
    for a in range(0, len(clips), SCORE_BATCH):
        out.append(model.score(np.stack(clips[a:a + SCORE_BATCH]), actions=actions[a:a + SCORE_BATCH]).bits_per_dim)
        if bar is not None:
            bar.update(len(out[-1]))
    return np.concatenate(out)


def _rollout(model: WorldModel, clip: Clip, context: int, actions: list[str], seed: int,
             bar: tqdm, session: dict[str, Any] | None = None) -> tuple[np.ndarray, float]:
    """Open loop: reset on clip.frames[:context], then one generated frame per action. Returns (len(actions), H, W,
    3) uint8 and the seconds spent generating."""
    with model.session(seed=seed, **(session or {})) as s:
        s.reset(frames=clip.frames[:context], actions=clip.actions[:context - 1])
        frames, start = [], time.perf_counter()
        for a in actions:
            frames.append(s.step(a).frame)
            bar.update(1)
        return np.stack(frames), time.perf_counter() - start


def open_loop_metrics(clips: list[Clip], gens: list[np.ndarray], context: int, horizon: int, penalty: float) -> dict:
    """Position errors per step k, the copy-last-frame baseline, detection rate and controllability.

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
    out["controllability"] = obeyed / moved if moved else None
    out["controllability_steps"] = moved
    return out


def _plausibility(model: WorldModel, clips: list[Clip], real_bpd: np.ndarray, context: int, horizon: int, seed: int,
                  bar: tqdm) -> dict:
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


def _targets(r: dict, horizon: int) -> dict:
    """The quality targets, each {value, op, threshold, pass}."""
    err, base = r[f"position_error_px_k{horizon}"], r[f"copy_baseline_position_error_px_k{horizon}"]
    rows = {f"position_error_px_k{horizon}": (err, "<=", 3.0),
            f"position_error_px_k{horizon}_over_copy_baseline": (err / base if base > 0 else None, "<=", 1 / 3),
            "controllability": (r["controllability"], ">=", 0.95),
            "object_persistence": (r["object_persistence"], ">=", 0.99),
            "plausibility_auroc": (r["plausibility_auroc"], ">=", 0.95),
            "plausibility_localisation": (r["plausibility_localisation"], ">=", 0.9)}
    if r["plausibility_false_alarm_rate"] is not None:
        rows["plausibility_false_alarm_rate"] = (r["plausibility_false_alarm_rate"], "<=", 0.05)
    out = {}
    for name, (value, op, threshold) in rows.items():
        ok = value is not None and (value <= threshold if op == "<=" else value >= threshold)
        out[name] = {"value": _num(value), "op": op, "threshold": threshold, "pass": bool(ok)}
    return out


def _meta_summary(meta: dict) -> dict:
    """Scalar entries of the checkpoint's meta.json, nested dicts flattened one level ('a.b')."""
    out: dict[str, Any] = {}
    for key, value in meta.items():
        if isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in value.items() if isinstance(v, (str, int, float, bool))})
        elif value is None or isinstance(value, (str, int, float, bool)):
            out[key] = value
    return out


def _check(model: WorldModel, episodes: int, horizon: int, long_horizon: int, context: int, seed: int,
           long_rollouts: int) -> None:
    cfg = model.config
    for name, value in (("episodes", episodes), ("horizon", horizon), ("long_horizon", long_horizon),
                        ("context", context), ("long_rollouts", long_rollouts)):
        if value < 1:
            raise ConfigError(f"evaluate: {name} must be >= 1, got {value}.")
    if seed < 0:
        raise ConfigError(f"evaluate: seed must be >= 0 (it seeds numpy and the world), got {seed}.")
    if cfg.height != cfg.width or cfg.height < 32:
        raise ConfigError(f"evaluate compares against PushWorld, which needs square frames of at least 32×32; "
                          f"model {cfg.name!r} makes {cfg.height}×{cfg.width} frames. Evaluate a model trained on "
                          "PushWorld frames (e.g. the 'small' preset, 64×64).")
    missing = [a for a in PUSHWORLD_ACTIONS if a not in cfg.actions]
    if missing:
        raise ConfigError(f"model {cfg.name!r} has no actions {missing} in its vocabulary {list(cfg.actions)}; "
                          "evaluate steps it with PushWorld's actions.")


def evaluate(model: WorldModel, episodes: int = 32, seed: int = 10_000, horizon: int = 16, long_horizon: int = 480,
             context: int = 2, progress: bool = True, out_png: str | os.PathLike | None = None,
             session: dict[str, Any] | None = None, long_rollouts: int = LONG_ROLLOUTS) -> dict:
    """Measure `model` against the real PushWorld on held-out seeds; deterministic for fixed arguments.

    Held-out episode i: PushWorld(size=H) reset with world seed `seed + i`, actions from PushWorldPolicy with
    `np.random.default_rng(seed + i)` (pushes, wall contacts, idling); an episode that reaches the goal before its
    `context + horizon` frames are complete is replaced by world seed `seed + i + j·episodes`, j = 1, 2, …
    Open loop: a session (seed `seed + i`) is reset on the first `context` real frames, then steps the real
    actions; generated frame k (k = 1 … horizon) is compared with real frame `context - 1 + k`.

    Args:
        model: a WorldModel with square frames ≥ 32 px and PushWorld's action vocabulary.
        episodes: held-out episodes.
        seed: first world seed; also seeds the sessions (seed + i) and the implausible edits.
        horizon: open-loop steps per episode; errors are reported at k = 1 and k = horizon.
        long_horizon: frames per long rollout for object persistence.
        long_rollouts: how many long rollouts (the first min(episodes, long_rollouts) episodes get one each).
        context: real frames given to the session before it imagines.
        session: extra Session settings for the rollouts (e.g. {"temperature": 0.7, "guidance": 1.0}).
        progress: tqdm bars (only when stderr is a terminal).
        out_png: where to write the side-by-side filmstrip (None: no picture).

    Returns:
        A JSON-ready dict (None where a metric has no data). Keys with k{h} use h = horizon:
        - bits_per_dim: mean `model.score` bits/dim of frames 1… of the real clips, in `likelihood_space`.
        - position_error_px_k1 / _k{h}: mean over episodes of the mean over agent and block of the Euclidean
          distance (px) between the object detected (`detect_objects`) in generated frame k and the world's true
          centre; an undetected object costs `miss_penalty_px` (half the frame diagonal, 45.25 px at 64×64).
          agent_/block_error_px_k*, detection_rate_k* (share of objects found), and *_by_step curves too.
        - copy_baseline_position_error_px_k*: the same error for objects detected in the last context frame.
        - controllability: over open-loop steps whose action is a move and whose real agent moved ≥ 1 px, the
          share where the agent detected in consecutive generated frames (the first: the last context frame)
          moved > 0.5 px along the commanded direction and more than across it (a missed agent fails).
        - object_persistence: share of frames of min(episodes, long_rollouts) rollouts of `long_horizon` frames in which
          both agent and block are detected (actions: the policy in the real world; after the real episode
          ends, the policy's persistent random actions); also per object, and per rollout the block's share
          (object_persistence_block_by_rollout) and the frame from which it was never seen again
          (block_lost_for_good_at, None when it was seen in the last frame); the same for the agent
          (object_persistence_agent_by_rollout, agent_lost_for_good_at).
        - plausibility_auroc: per episode one frame k ∈ [context, context + horizon) is drawn and four edited
          copies made (teleport, wall, vanish, recolour; see `implausible_clip`); AUROC of frame k's bits/dim,
          edited clips (positives) vs the real clips' frame k (negatives); per kind, and paired accuracy.
        - plausibility_localisation: share of those edits whose most surprising patch in frame k (`report.surprise`)
          has its centre within 8 px of a place the edit changed (the object's old place; for teleport and wall
          also its new one); per kind too.
        - plausibility_detection_rate / plausibility_false_alarm_rate (None when the model has no calibration):
          share of edited frames k, and of all real frames after the first, flagged implausible at the model's
          calibrated threshold (`worldsim.plausibility`).
        - targets: the quality targets, each {value, op, threshold, pass}; wall_time_s, frames_per_s (generation
          only), settings, model summary and checkpoint meta.
    """
    _check(model, episodes, horizon, long_horizon, context, seed, long_rollouts)
    start = time.perf_counter()
    cfg = model.config
    size, penalty = cfg.height, miss_penalty(cfg.height, cfg.width)
    length = context + horizon

    with _bar(episodes, "eval: worlds", progress) as bar:
        clips = []
        for i in range(episodes):
            clips.append(held_out_clip(size, seed, i, episodes, length))
            bar.update(1)
    with _bar(episodes, "eval: score", progress) as bar:
        real_bpd = _score(model, [c.frames for c in clips], [c.actions for c in clips], bar)  # (E, T)

    gen_seconds, gen_frames, gens = 0.0, 0, []
    with _bar(episodes * horizon, "eval: open loop", progress, "frame") as bar:
        for i, clip in enumerate(clips):
            frames, secs = _rollout(model, clip, context, clip.actions[context - 1:], seed + i, bar, session)
            gens.append(frames)
            gen_seconds, gen_frames = gen_seconds + secs, gen_frames + len(frames)
    result: dict[str, Any] = open_loop_metrics(clips, gens, context, horizon, penalty)

    n_long = min(episodes, long_rollouts)
    seen = np.zeros((n_long, long_horizon, len(OBJECTS)), bool)
    with _bar(n_long * long_horizon, "eval: long rollouts", progress, "frame") as bar:
        for i, clip in enumerate(clips[:n_long]):
            _, actions = long_actions(size, clip.world_seed, context - 1 + long_horizon)
            frames, secs = _rollout(model, clip, context, actions[context - 1:], seed + i, bar, session)
            gen_seconds, gen_frames = gen_seconds + secs, gen_frames + len(frames)
            for j, frame in enumerate(frames):
                seen[i, j] = [p is not None for p in detect(frame).values()]
    with _bar(episodes, "eval: plausibility", progress) as bar:
        plausibility = _plausibility(model, clips, real_bpd, context, horizon, seed, bar)

    result.update({
        "object_persistence": float(seen.all(-1).mean()),
        "object_persistence_agent": float(seen[..., 0].mean()),
        "object_persistence_block": float(seen[..., 1].mean()),
        "object_persistence_block_by_rollout": [float(b) for b in seen[..., 1].mean(1)],
        "block_lost_for_good_at": [lost_for_good_at(b) for b in seen[..., 1]],
        "object_persistence_agent_by_rollout": [float(a) for a in seen[..., 0].mean(1)],
        "agent_lost_for_good_at": [lost_for_good_at(a) for a in seen[..., 0]],
        "long_rollouts": n_long,
        **plausibility,
    })
    result = {
        "model": {"name": cfg.name, "height": cfg.height, "width": cfg.width, "fps": cfg.fps,
                  "parameters": sum(p.numel() for p in model.net.parameters())},
        "meta": _meta_summary(model.meta),
        "episodes": episodes, "seed": seed, "horizon": horizon, "long_horizon": long_horizon, "context": context,
        "session": {**model.sampling_defaults, **(session or {})},  # the settings in effect
        "world_seeds": [c.world_seed for c in clips],
        "bits_per_dim": float(real_bpd[:, 1:].mean()),
        "likelihood_space": cfg.likelihood_space,
        "miss_penalty_px": penalty,
        **result,
    }
    result["targets"] = _targets(result, horizon)
    result["targets_passed"] = sum(t["pass"] for t in result["targets"].values())
    if out_png is not None:
        save_filmstrip(out_png, clips, gens, context, f"{cfg.name}: ground truth vs imagined (open loop)")
        result["png"] = str(out_png)
    result["generated_frames"] = gen_frames
    result["frames_per_s"] = gen_frames / gen_seconds if gen_seconds > 0 else None
    result["wall_time_s"] = time.perf_counter() - start
    logger.info("evaluated %s on %d episodes in %.1f s", cfg.name, episodes, result["wall_time_s"])
    return result


# ----- CLI hooks ------------------------------------------------------------------------------------------------
def _count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
    return value


def _seed(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `worldsim eval`."""
    parser.add_argument("--model", default="pushworld-64", help="bundled model name or checkpoint directory")
    parser.add_argument("--episodes", type=_count, default=32, help="held-out episodes (world seeds)")
    parser.add_argument("--json", required=True, help="write the metrics to this JSON file")
    parser.add_argument("--png", default=None, help="side-by-side filmstrip (default: <json stem>.png next to it)")
    parser.add_argument("--seed", type=_seed, default=10_000,
                        help="first held-out world seed (keep it above the training seeds)")
    parser.add_argument("--horizon", type=_count, default=16, help="open-loop steps (errors at k=1 and k=horizon)")
    parser.add_argument("--long-horizon", type=_count, default=480,
                        help="frames per long rollout for object persistence (480 = 30 s at 16 fps)")
    parser.add_argument("--long-rollouts", type=_count, default=LONG_ROLLOUTS,
                        help="long rollouts for object persistence (each --long-horizon frames; the slowest part)")
    parser.add_argument("--temperature", type=float,
                        help="sampling temperature of the rollouts (default: the checkpoint's, else 1)")
    parser.add_argument("--guidance", type=float,
                        help="classifier-free guidance weight of the rollouts (default: the checkpoint's, else 0)")
    parser.add_argument("--context", choices=("sample", "frame"),
                        help="what a generated frame leaves in the session's context (see Session; default: the "
                             "checkpoint's, else sample)")
    parser.add_argument("--best-of", type=_count, help="candidates per generated frame, the likeliest kept (see "
                        "Session; default: the checkpoint's, else 1; costs about that many times the compute)")
    parser.add_argument("--quick", action="store_true", help="a fast check: at most 4 episodes and 64 long frames")


def format_table(r: dict) -> str:
    """A short human-readable summary of an evaluate() result."""
    h = r["horizon"]
    rows = [("bits/dim", f"{r['bits_per_dim']:.3f} ({r['likelihood_space']})"),
            *[(f"position error k{k} (copy baseline)",
               f"{r[f'position_error_px_k{k}']:.2f} px ({r[f'copy_baseline_position_error_px_k{k}']:.2f})")
              for k in sorted({1, h})],
            (f"detection rate k{h}", f"{r[f'detection_rate_k{h}']:.3f}"),
            ("controllability", "n/a" if r["controllability"] is None else f"{r['controllability']:.3f}"),
            ("object persistence", f"{r['object_persistence']:.3f}"),
            ("plausibility AUROC", "n/a" if r["plausibility_auroc"] is None else f"{r['plausibility_auroc']:.3f}"),
            ("plausibility: hottest patch ≤ 8 px of the edit", f"{r['plausibility_localisation']:.3f}"),
            ("plausibility: edits flagged / real frames flagged",
             "uncalibrated" if r["plausibility_false_alarm_rate"] is None else
             f"{r['plausibility_detection_rate']:.3f} / {r['plausibility_false_alarm_rate']:.3f}"),
            ("generation", f"{r['frames_per_s']:.1f} frames/s" if r["frames_per_s"] else "n/a"),
            ("wall time", f"{r['wall_time_s']:.1f} s")]
    rows += [(f"target {name} {t['op']} {t['threshold']:.3g}", "pass" if t["pass"] else "FAIL")
             for name, t in r["targets"].items()]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def settings_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """evaluate() keyword arguments from parsed flags; --quick caps episodes at 4 and the long rollout at 64."""
    episodes, long_horizon = args.episodes, args.long_horizon
    if args.quick:
        episodes, long_horizon = min(episodes, 4), min(long_horizon, 64)
    return {"episodes": episodes, "seed": args.seed, "horizon": args.horizon, "long_horizon": long_horizon,
            "long_rollouts": args.long_rollouts,
            "session": {k: v for k, v in (("temperature", args.temperature), ("guidance", args.guidance),
                                          ("context", args.context), ("best_of", args.best_of))
                        if v is not None}}  # unset: the checkpoint's


def run(args: argparse.Namespace) -> int:
    """`worldsim eval`: load the model, evaluate, write the JSON (and PNG), print a table."""
    json_path = Path(args.json)
    png = Path(args.png) if args.png else json_path.with_name(f"{json_path.stem}.png")
    model = WorldModel.from_pretrained(args.model)
    result = evaluate(model, out_png=png, **settings_from_args(args))
    result["model"]["source"] = str(args.model)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = json_path.with_name(f".{json_path.name}.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, json_path)
    print(format_table(result))
    print(f"wrote {json_path} and {png}")
    return 0
