"""The generic `worldsim eval`: a model of any world (text or vector actions) against the real env on held-out seeds.

Open-loop predictions from real context under the real actions are compared with the real frames (PSNR, SSIM,
copy-last-frame baselines), real clips are scored (bits/dim), and an inverse-dynamics probe trained on other real
transitions of the env reads the actions back from imagined transitions (controllability). A world registered in
`worldsim.worlds` adds its own metrics through its `eval_extras`.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import gymnasium as gym
import numpy as np

from .actions import ActionSpec
from .errors import ConfigError, WorldSimError
from .eval_metrics import json_float, progress_bar, rollout, save_filmstrip, score_clips
from .image_metrics import mse, psnr_from_mse, ssim
from .probe import InverseDynamicsProbe
from .worlds import World, find

logger = logging.getLogger(__name__)

DEFAULT_ENV_ID = "worldsim/PushWorld-v0"  # for checkpoints whose meta.json names no env (the bundled pushworld-64)
MAX_RESEEDS = 50
PROBE_SEED_OFFSET = 1_000_000  # the probe trains on world seeds seed + 1e6 + j, apart from the held-out ones
PROBE_EPISODE_STEPS = 64  # steps per probe-training episode (more episodes: more varied scenes)


@dataclass
class Episode:
    """A real episode at the model's frame size: frames (T, H, W, 3) uint8; actions: T-1 model actions (phrases,
    or float32 (d,) vectors), actions[t] leading from frame t to t+1; world_seed: the env's reset seed."""

    frames: np.ndarray
    actions: list[Any]
    world_seed: int


def model_env_id(model: Any) -> tuple[str, str]:
    """The env a model was trained on, from its meta.json ("env_id", or the "env_id" of its data source), and where
    that came from ("meta"); DEFAULT_ENV_ID ("default") when the meta names none."""
    meta = model.meta
    if isinstance(meta.get("env_id"), str):
        return meta["env_id"], "meta"
    for key in ("data_source", "source"):
        if isinstance(meta.get(key), dict) and isinstance(meta[key].get("env_id"), str):
            return meta[key]["env_id"], "meta"
    return DEFAULT_ENV_ID, "default"


class RealEnv:
    """The real env a model is measured against: made at the model's frame size where the world allows it (frames
    are resized with INTER_AREA otherwise), stepped by the world's default data policy (random actions for envs
    without a registered world), its actions converted to the model's."""

    def __init__(self, env_id: str, spec: ActionSpec, height: int, width: int):
        self.env_id, self.spec, self.shape = env_id, spec, (height, width)
        self.world: World | None = find(env_id)
        mode = "vector" if spec.is_vector else "text"
        try:
            if self.world is not None and self.world.make_env is not None:
                self.env = self.world.make_env(size=height if height == width else None, action_mode=mode)
            else:
                self.env = gym.make(env_id if self.world is None else self.world.env_id, render_mode="rgb_array")
        except gym.error.Error as exc:
            raise ConfigError(f"cannot make env {env_id!r} ({exc}). Fix: pass --env with a Gymnasium id that is "
                              "registered here, or install the world's package.") from None
        self.policy_name, self._policy = self._policy_factory()
        try:
            self._check_space()
        except ConfigError:
            self.env.close()
            raise

    def _policy_factory(self) -> tuple[str, Callable[[], Any]]:
        world = self.world
        if world is not None and world.default_policy is not None:
            return world.default_policy, world.policies[world.default_policy]
        from .record import RandomPolicy

        return "random", RandomPolicy

    def _check_space(self) -> None:
        space, spec = self.env.action_space, self.spec
        if spec.is_vector:
            if not isinstance(space, gym.spaces.Box) or int(np.prod(space.shape)) != spec.dim:
                raise ConfigError(f"env {self.env_id!r} has action space {space}; the model takes vector actions "
                                  f"({spec.describe()}). Fix: evaluate with the env the model was trained on (--env).")
        elif isinstance(space, gym.spaces.Box):
            raise ConfigError(f"env {self.env_id!r} has vector actions ({space}); the model takes text actions "
                              f"({spec.describe()}). Fix: evaluate with the env the model was trained on (--env).")

    def model_action(self, action: Any) -> Any:
        """The model's action for an env action: a phrase (the env's own name for it, else the vocabulary's entry
        at its index) or a float32 (d,) vector within the spec's bounds."""
        spec = self.spec
        if spec.is_vector:
            return spec.check_vector(np.asarray(action, np.float32).reshape(-1), "env action")[0]
        if isinstance(action, str):
            phrase = action
        elif callable(getattr(self.env.unwrapped, "action_text", None)):
            phrase = str(self.env.unwrapped.action_text(action))
        else:
            space = self.env.action_space
            i = int(action) - int(getattr(space, "start", 0))
            n = int(getattr(space, "n", -1))
            phrase = spec.vocabulary[i] if n == len(spec.vocabulary) and 0 <= i < n else f"action {int(action)}"
        if phrase not in spec.vocabulary:
            raise ConfigError(f"env {self.env_id!r} took the action {phrase!r}, which is not in the model's "
                              f"vocabulary {list(spec.vocabulary)}. Fix: evaluate with the env the model was trained "
                              "on (--env).")
        return phrase

    def _frame(self) -> np.ndarray:
        frame = self.env.render()
        if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3:
            raise WorldSimError(f"env {self.env_id!r} rendered {type(frame).__name__}; eval needs (H, W, 3) frames "
                                "from an env made with render_mode='rgb_array'.")
        h, w = self.shape
        if frame.shape[:2] != (h, w):
            frame = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
        return np.ascontiguousarray(frame, dtype=np.uint8)

    def episode(self, world_seed: int, steps: int) -> tuple[Episode, bool]:
        """Up to `steps` steps from reset(seed=world_seed) under a fresh policy drawing from
        default_rng(world_seed); stops when the episode ends. Returns the episode and whether it ended."""
        policy, rng = self._policy(), np.random.default_rng(world_seed)
        obs, info = self.env.reset(seed=world_seed)
        frames, actions, ended = [self._frame()], [], False
        for _ in range(steps):
            action = policy(self.env, obs, info, rng)
            obs, _, terminated, truncated, info = self.env.step(action)
            frames.append(self._frame())
            actions.append(self.model_action(action))
            if terminated or truncated:
                ended = True
                break
        return Episode(np.stack(frames), actions, world_seed), ended

    def held_out(self, seed: int, index: int, episodes: int, length: int) -> Episode:
        """Episode `index` of the held-out set: `length` frames of world seed `seed + index`; an episode that ends
        sooner is replaced by world seed `seed + index + j·episodes`, j = 1, 2, …"""
        for j in range(MAX_RESEEDS):
            ep, _ = self.episode(seed + index + j * episodes, length - 1)
            if len(ep.frames) == length:
                return ep
        raise WorldSimError(f"{MAX_RESEEDS} episodes of {self.env_id} from world seed {seed + index} all ended "
                            f"within {length} frames. Fix: use a shorter --horizon.")

    def transitions(self, first_seed: int, count: int) -> tuple[np.ndarray, np.ndarray, list[Any]]:
        """`count` real transitions (frame t, frame t+1, action t) from episodes of world seeds first_seed, +1, …"""
        before: list[np.ndarray] = []
        after: list[np.ndarray] = []
        actions: list[Any] = []
        seed = first_seed
        while len(actions) < count:
            ep, _ = self.episode(seed, PROBE_EPISODE_STEPS)
            before.extend(ep.frames[:-1])
            after.extend(ep.frames[1:])
            actions.extend(ep.actions)
            seed += 1
        return np.stack(before[:count]), np.stack(after[:count]), actions[:count]

    def close(self) -> None:
        self.env.close()


def frame_metrics(episodes: list[Episode], gens: list[np.ndarray], context: int, horizon: int) -> dict[str, Any]:
    """PSNR and SSIM of imagined frame k against real frame `context - 1 + k`, and of the last context frame
    against it (copy_baseline_*), at k = 1 and k = horizon and as curves over k.

    SSIM is the mean over episodes; PSNR is that of the mean squared error over episodes (an exact copy, common in
    worlds that stand still, has infinite PSNR and would swamp a mean of PSNRs; None when every frame is exact).
    """
    shape = (len(episodes), horizon)
    out = {name: np.zeros(shape) for name in ("mse", "ssim", "copy_baseline_mse", "copy_baseline_ssim")}
    for i, (ep, gen) in enumerate(zip(episodes, gens, strict=True)):
        truth = ep.frames[context:context + horizon]
        held = np.broadcast_to(ep.frames[context - 1], truth.shape)
        out["mse"][i], out["ssim"][i] = mse(gen, truth), ssim(gen, truth)
        out["copy_baseline_mse"][i], out["copy_baseline_ssim"][i] = mse(held, truth), ssim(held, truth)
    curves = {"psnr": psnr_from_mse(out["mse"].mean(0)),
              "copy_baseline_psnr": psnr_from_mse(out["copy_baseline_mse"].mean(0)),
              "ssim": out["ssim"].mean(0), "copy_baseline_ssim": out["copy_baseline_ssim"].mean(0)}
    result: dict[str, Any] = {}
    for k in sorted({1, horizon}):
        for name in ("psnr", "copy_baseline_psnr", "ssim", "copy_baseline_ssim"):
            result[f"{name}_k{k}"] = json_float(curves[name][k - 1])
    for name, values in curves.items():
        result[f"{name}_by_step"] = [json_float(v) for v in values]
    return result


def controllability(probe: InverseDynamicsProbe, episodes: list[Episode], gens: list[np.ndarray],
                    context: int, horizon: int) -> dict[str, Any]:
    """The probe's score on imagined transitions over its score on the real transitions they stand for.

    Imagined transition k of an episode: (imagined frame k-1, imagined frame k) under action `context - 2 + k`,
    imagined frame 0 being the last real context frame; real transition k: the real frames at the same steps.
    """
    last = context - 1
    real_b = np.concatenate([ep.frames[last:last + horizon] for ep in episodes])
    real_a = np.concatenate([ep.frames[last + 1:last + 1 + horizon] for ep in episodes])
    fake_b = np.concatenate([np.concatenate([ep.frames[last:last + 1], g[:-1]]) for ep, g in zip(episodes, gens,
                                                                                                 strict=True)])
    fake_a = np.concatenate(gens)
    actions = [a for ep in episodes for a in ep.actions[last:last + horizon]]
    real = probe.score(real_b, real_a, actions)
    imagined = probe.score(fake_b, fake_a, actions)
    ratio = imagined / real if np.isfinite(real) and real > 0 and np.isfinite(imagined) else None
    chance = 0.0 if probe.spec.is_vector else Counter(actions).most_common(1)[0][1] / len(actions)
    return {"controllability": json_float(ratio), "controllability_probe_real": json_float(real),
            "controllability_probe_imagined": json_float(imagined),
            "controllability_probe_metric": "r2" if probe.spec.is_vector else "accuracy",
            "controllability_probe_chance": chance, "controllability_transitions": len(actions)}


def _meta_summary(meta: dict) -> dict:
    """Scalar entries of the checkpoint's meta.json, nested dicts flattened one level ('a.b')."""
    out: dict[str, Any] = {}
    for key, value in meta.items():
        if isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in value.items() if isinstance(v, (str, int, float, bool))})
        elif value is None or isinstance(value, (str, int, float, bool)):
            out[key] = value
    return out


def _check(model: Any, episodes: int, horizon: int, context: int, seed: int, probe_transitions: int,
           probe_steps: int) -> None:
    for name, value in (("episodes", episodes), ("horizon", horizon), ("context", context),
                        ("probe_steps", probe_steps)):
        if value < 1:
            raise ConfigError(f"evaluate: {name} must be >= 1, got {value}.")
    if probe_transitions < 2:
        raise ConfigError(f"evaluate: probe_transitions must be >= 2 (the probe's training set), got "
                          f"{probe_transitions}.")
    if seed < 0:
        raise ConfigError(f"evaluate: seed must be >= 0 (it seeds numpy and the world), got {seed}.")
    cfg = model.config
    if min(cfg.height, cfg.width) < 7:
        raise ConfigError(f"evaluate needs frames of at least 7×7 for SSIM; model {cfg.name!r} makes "
                          f"{cfg.height}×{cfg.width} frames.")


def evaluate(model: Any, env: str | None = None, episodes: int = 32, seed: int = 10_000, horizon: int = 16,
             context: int = 2, progress: bool = True, out_png: str | os.PathLike | None = None,
             session: dict[str, Any] | None = None, probe_transitions: int = 2048, probe_steps: int = 400,
             extras: bool = True, **world_options: Any) -> dict[str, Any]:
    """Measure `model` against the real env on held-out world seeds; deterministic for fixed arguments.

    Held-out episode i: the env reset with world seed `seed + i`, actions from the world's default data policy
    (random actions for an env without a registered world) drawing from `np.random.default_rng(seed + i)`; an
    episode that ends before its `context + horizon` frames is replaced by world seed `seed + i + j·episodes`,
    j = 1, 2, … Frames are made at (or resized to) the model's size. Open loop: a session (seed `seed + i`) is reset
    on the first `context` real frames, then steps the real actions; imagined frame k (k = 1 … horizon) is
    compared with real frame `context - 1 + k`.

    Args:
        model: a WorldModel (text or vector actions).
        env: a Gymnasium env id or registered world name (default: the env in the model's meta.json, else
            worldsim/PushWorld-v0).
        episodes: held-out episodes.
        seed: first world seed; also seeds the sessions (seed + i) and the probe.
        horizon: open-loop steps per episode; metrics are reported at k = 1 and k = horizon.
        context: real frames given to the session before it imagines.
        session: extra Session settings for the rollouts (e.g. {"temperature": 0.7, "guidance": 1.0}).
        probe_transitions: real transitions (world seeds from seed + 1e6) the inverse-dynamics probe trains on.
        probe_steps: the probe's training steps.
        extras: add the world's own metrics (its `eval_extras`), when it registers some.
        world_options: passed on to the world's `eval_extras` (PushWorld: long_horizon, long_rollouts).
        progress: tqdm bars (only when stderr is a terminal).
        out_png: where to write the side-by-side filmstrip (None: no picture).

    Returns:
        A JSON-ready dict (None where a metric has no data). Keys with k{h} use h = horizon:
        - bits_per_dim: mean `model.score` bits/dim of frames 1… of the real held-out clips (`likelihood_space`).
        - psnr_k1 / psnr_k{h} (dB, of the mean squared error over episodes), ssim_k1 / ssim_k{h} (the mean over
          episodes; `worldsim.image_metrics`) of imagined frame k against the real one; copy_baseline_*: the same
          for the last context frame; *_by_step curves.
        - controllability: an inverse-dynamics probe (`worldsim.probe`) trained on `probe_transitions` other real
          transitions of the env reads the actions of the imagined transitions; its accuracy (text) or mean R²
          (vector) there, over the same on the real transitions at those steps (controllability_probe_imagined /
          controllability_probe_real; controllability_probe_chance: the commonest action's share, or 0 for R²).
        - the world's extras (PushWorld: position errors, controllability_detector, object persistence,
          plausibility, targets), or extras_skipped with the reason when they cannot measure this model.
        - env_id (env_id_from: "argument", "meta" or "default"), world, policy, settings, model summary, checkpoint
          meta, world_seeds, generated_frames, frames_per_s (generation only), wall_time_s, png.
    """
    _check(model, episodes, horizon, context, seed, probe_transitions, probe_steps)
    start = time.perf_counter()
    cfg, spec = model.config, model.action_spec
    env_id, env_from = (env, "argument") if env is not None else model_env_id(model)
    real_env = RealEnv(env_id, spec, cfg.height, cfg.width)
    length = context + horizon
    try:
        with progress_bar(episodes, "eval: real episodes", progress) as bar:
            held = []
            for i in range(episodes):
                held.append(real_env.held_out(seed, i, episodes, length))
                bar.update(1)
        before, after, probe_actions = real_env.transitions(seed + PROBE_SEED_OFFSET, probe_transitions)
    finally:
        real_env.close()
    with progress_bar(episodes, "eval: score", progress) as bar:
        real_bpd = score_clips(model, [ep.frames for ep in held], [ep.actions for ep in held], bar)  # (E, T)

    gen_seconds, gen_frames, gens = 0.0, 0, []
    with progress_bar(episodes * horizon, "eval: open loop", progress, "frame") as bar:
        for i, ep in enumerate(held):
            frames, secs = rollout(model, ep.frames[:context], ep.actions[:context - 1], ep.actions[context - 1:],
                                   seed + i, session, bar)
            gens.append(frames)
            gen_seconds, gen_frames = gen_seconds + secs, gen_frames + len(frames)
    probe = InverseDynamicsProbe.fit(before, after, probe_actions, spec, steps=probe_steps, seed=seed)

    result: dict[str, Any] = {
        "model": {"name": cfg.name, "height": cfg.height, "width": cfg.width, "fps": cfg.fps,
                  "action_spec": spec.describe(), "parameters": sum(p.numel() for p in model.net.parameters())},
        "meta": _meta_summary(model.meta),
        "env_id": env_id, "env_id_from": env_from,
        "world": None if real_env.world is None else real_env.world.name, "policy": real_env.policy_name,
        "episodes": episodes, "seed": seed, "horizon": horizon, "context": context,
        "session": {**model.sampling_defaults, **(session or {})},  # the settings in effect
        "world_seeds": [ep.world_seed for ep in held],
        "bits_per_dim": float(real_bpd[:, 1:].mean()),
        "likelihood_space": cfg.likelihood_space,
        **frame_metrics(held, gens, context, horizon),
        **controllability(probe, held, gens, context, horizon),
        "probe_train_transitions": probe_transitions, "probe_steps": probe_steps,
    }
    world = real_env.world
    if extras and world is not None and world.eval_extras is not None:
        more = dict(world.eval_extras(model, episodes=episodes, seed=seed, horizon=horizon, context=context,
                                      session=session, progress=progress, held_out=held, imagined=gens,
                                      real_bits_per_dim=real_bpd, **world_options))
        gen_frames += int(more.pop("generated_frames", 0))
        gen_seconds += float(more.pop("generation_s", 0.0))
        clash = sorted(set(more) & set(result))
        if clash:
            raise WorldSimError(f"world {world.name!r}: its eval_extras return keys the generic eval owns: {clash}. "
                                "Fix: rename them in the world's plug-in.")
        if "extras_skipped" in more:
            logger.warning("%s eval extras skipped: %s", world.name, more["extras_skipped"])
        result.update(more)
    if out_png is not None:
        save_filmstrip(out_png, [ep.frames for ep in held], gens, context,
                       f"{cfg.name} on {env_id}: ground truth vs imagined (open loop)")
        result["png"] = str(out_png)
    result["generated_frames"] = gen_frames
    result["frames_per_s"] = gen_frames / gen_seconds if gen_seconds > 0 else None
    result["wall_time_s"] = time.perf_counter() - start
    logger.info("evaluated %s on %s, %d episodes in %.1f s", cfg.name, env_id, episodes, result["wall_time_s"])
    return result
