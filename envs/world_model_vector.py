"""`WorldModelVectorEnv`: N imagined worlds stepped by one batched `Session` (one forward pass per step)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from worldsim.errors import ConfigError, InvalidAction, SessionStateError
from worldsim.session import Session
from worldsim.world_model import WorldModel

from .world_model_env import (
    _SEED_BOUND,
    action_space_for,
    check_options,
    load_world_model,
    model_world,
    resolve_action_mode,
    session_action,
    session_settings,
    world_frame,
)


class WorldModelVectorEnv(VectorEnv):
    """`num_envs` copies of `WorldModelEnv` sharing one batched session: every step is one forward pass.

    Args:
        num_envs: number of sub-envs N (the session's batch size).
        max_episode_steps: a sub-env is truncated after this many steps (None: never).
        model, action_mode, strict_text, render_mode, session_kwargs, reward_fn: as for `WorldModelEnv`.

    Autoreset is NEXT_STEP: the step after a sub-env terminates or truncates returns its new first frame with
    reward 0, terminated and truncated False (its action is ignored). The batch shares one KV cache, so a
    sub-env is reset by re-anchoring the whole batch: the session is reset on one frame per sub-env (the
    continuing ones' latest frames and the new first frames). The continuing sub-envs keep their frames but lose
    the older context, which the model would otherwise still see within its window.

    `reset(options=...)` takes {"frames": uint8 (N, t0, H, W, 3)} (with optional "actions": N lists of t0-1
    phrases), {"prompt": str or N strs}, or {"world_seed": int (sub-env i gets world_seed + i) or N ints}; by
    default a world seed per sub-env drawn from `np_random`. A sub-env that autoresets starts again the same way:
    the same frames' last one, its prompt (imagined on the side), or a fresh world seed. {"reset_mask": bool (N,)}
    (alone) resets only the masked sub-envs, as autoreset does.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 16, "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int, model: str | os.PathLike | WorldModel = "pushworld-64",
                 action_mode: Literal["discrete", "text", "vector"] | None = None, strict_text: bool = True,
                 render_mode: str | None = "rgb_array", session_kwargs: dict[str, Any] | None = None,
                 reward_fn: Callable[[np.ndarray, str], float] | None = None,
                 max_episode_steps: int | None = 480) -> None:
        if not isinstance(num_envs, int) or num_envs < 1:
            raise ConfigError(f"num_envs must be an int ≥ 1; received {num_envs!r}.")
        if max_episode_steps is not None and max_episode_steps < 1:
            raise ConfigError(f"max_episode_steps must be ≥ 1 or None; received {max_episode_steps!r}.")
        if render_mode not in (None, "rgb_array"):
            raise ConfigError(f"render_mode={render_mode!r} is not supported; use 'rgb_array' or None.")
        self.model = load_world_model(model)
        cfg = self.model.config
        self.num_envs = num_envs
        self.metadata = {**self.metadata, "render_fps": cfg.fps}
        self.render_mode = render_mode
        self.action_mode = resolve_action_mode(self.model, action_mode)
        self.strict_text = strict_text
        self.reward_fn = reward_fn
        self.max_episode_steps = max_episode_steps
        self.session_kwargs = session_settings(session_kwargs)
        self.single_action_space = action_space_for(self.model, self.action_mode, strict_text)
        self.single_observation_space = spaces.Box(0, 255, (cfg.height, cfg.width, 3), np.uint8)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.session: Session | None = None
        self._frames = np.zeros((num_envs, cfg.height, cfg.width, 3), np.uint8)  # last frame of each sub-env
        self._steps = np.zeros(num_envs, np.int64)
        self._autoreset = np.zeros(num_envs, np.bool_)
        self._options: dict[str, Any] = {}
        self._prompts: list[str | None] = [None] * num_envs

    # ----- gymnasium API ------------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset every sub-env; returns (frames uint8 (N, H, W, 3), info dict of per-sub-env arrays)."""
        super().reset(seed=seed)
        n = self.num_envs
        options = dict(options or {})
        if "reset_mask" in options:
            return self._reset_masked(options.pop("reset_mask"), options)
        options = check_options(options)
        if self.session is not None:
            self.session.close()
        self.session = self.model.session(seed=int(self.np_random.integers(_SEED_BOUND)), batch_size=n, batched=True,
                                          strict_actions=self.strict_text or self.action_mode != "text",
                                          reward_fn=self.reward_fn, **self.session_kwargs)
        prompt = options.get("prompt")
        self._prompts = list(prompt) if isinstance(prompt, (list, tuple)) else [prompt] * n
        if len(self._prompts) != n:
            raise ConfigError(f"reset option 'prompt': {len(self._prompts)} prompts for num_envs={n}; pass one "
                              f"string or a list of {n}.")
        self._options = options
        infos: dict[str, Any] = {}
        frames = options.get("frames")
        if frames is None and prompt is None:
            seeds = self._world_seeds(options.get("world_seed"))
            frames = np.stack([self._world_frame(int(s)) for s in seeds])[:, None]  # (N, 1, H, W, 3)
            for i, s in enumerate(seeds):
                infos = self._add_info(infos, {"world_seed": int(s)}, i)
        prompts = None if prompt is None else self._prompts
        t0 = np.shape(frames)[1] if frames is not None and np.ndim(frames) == 5 else None
        acts = self._reset_actions(options.get("actions"), t0)
        self._frames = np.array(self.session.reset(frames=frames, prompt=prompts, actions=acts), copy=True)
        self._steps[:] = 0
        self._autoreset[:] = False
        return self._frames.copy(), infos

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """One batched step; returns frames (N, H, W, 3) uint8, rewards (N,) float32, terminated (N,),
        truncated (N,), and info arrays "log_prob", "bits_per_dim", "iterations", "action_text" (text models; with
        "_key" masks; sub-envs that autoreset this step report "world_seed" instead). Vector models take actions
        (N, d)."""
        if self.session is None:
            raise SessionStateError("step called before reset; call envs.reset() first.")
        n, spec = self.num_envs, self.model.action_spec
        if len(actions) != n:
            raise InvalidAction(f"expected {n} actions (one per sub-env); received {len(actions)}.")
        resetting = self._autoreset.copy()
        # A resetting sub-env's action is ignored; its row still runs in the batched pass, with a placeholder.
        placeholder = spec.denormalise(np.zeros(spec.dim)) if spec.is_vector else spec.vocabulary[0]
        texts = [placeholder if resetting[i] else session_action(actions[i], self.model, self.action_mode)
                 for i in range(n)]
        frames, rewards = self._frames.copy(), np.zeros(n, np.float32)
        terminated, infos = np.zeros(n, np.bool_), dict[str, Any]()
        if not resetting.all():
            out = self.session.step(texts)
            frames = np.array(out.frame, copy=True)
            rewards = np.asarray(out.reward, np.float32).copy()
            terminated = np.asarray(out.terminated, np.bool_).copy()
            log_prob, bits_per_dim = np.asarray(out.log_prob), np.asarray(out.bits_per_dim)  # (N,): batched
            for i in np.flatnonzero(~resetting):
                info: dict[str, Any] = {"log_prob": float(log_prob[i]), "bits_per_dim": float(bits_per_dim[i]),
                                        "iterations": int(out.info["iterations"])}
                if not spec.is_vector:
                    info["action_text"] = str(texts[i])
                infos = self._add_info(infos, info, int(i))
        self._steps += 1
        truncated = np.zeros(n, np.bool_) if self.max_episode_steps is None else self._steps >= self.max_episode_steps
        if resetting.any():
            frames, infos = self._reanchor(frames, resetting, infos)
            rewards[resetting], terminated[resetting], truncated[resetting] = 0.0, False, False
            self._steps[resetting] = 0
        self._frames = frames
        self._autoreset = terminated | truncated
        return frames.copy(), rewards, terminated, truncated, infos

    def render(self) -> tuple[np.ndarray, ...] | None:
        """The last frame of each sub-env, N arrays uint8 (H, W, 3), with render_mode 'rgb_array'."""
        if self.render_mode != "rgb_array" or self.session is None:
            return None
        return tuple(f.copy() for f in self._frames)

    def close_extras(self, **kwargs: Any) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None

    # ----- internals ----------------------------------------------------------------------------------------
    def _reset_masked(self, mask: Any, options: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset only the sub-envs where `mask` (bool (N,)) is True, the way autoreset does (re-anchoring)."""
        n = self.num_envs
        mask = np.asarray(mask)
        if mask.shape != (n,) or mask.dtype != np.bool_ or not mask.any():
            raise ConfigError(f"reset option 'reset_mask' must be a bool array of shape ({n},) with a True value; "
                              f"received {mask!r}.")
        if options:
            raise ConfigError(f"reset option 'reset_mask' goes alone; received also {sorted(options)}. Masked "
                              "sub-envs start again from the source of the last full reset.")
        if self.session is None:
            raise SessionStateError("reset(options={'reset_mask': ...}) needs a full reset first; call envs.reset().")
        self._frames, infos = self._reanchor(self._frames, mask, {})
        self._steps[mask], self._autoreset[mask] = 0, False
        return self._frames.copy(), infos

    def _world_frame(self, world_seed: int) -> np.ndarray:
        cfg = self.model.config
        return world_frame(cfg.height, cfg.width, world_seed, model_world(self.model))[0]

    def _world_seeds(self, given: Any) -> list[int]:
        n = self.num_envs
        if given is None:
            return [int(s) for s in self.np_random.integers(_SEED_BOUND, size=n)]
        if isinstance(given, (int, np.integer)):
            return [int(given) + i for i in range(n)]
        if len(given) != n:
            raise ConfigError(f"reset option 'world_seed': {len(given)} seeds for num_envs={n}; pass one int "
                              f"(sub-env i gets world_seed + i) or a list of {n}.")
        return [int(s) for s in given]

    def _reset_actions(self, actions: Any, t0: int | None) -> list | None:
        """Batched sessions take actions per transition (t0-1 lists of N); the option gives N lists of t0-1.

        Without the option, t0 > 1 frames get N "no action" entries per transition (the batched
        `Session.reset` does not accept actions=None there)."""
        if actions is None:
            return None if t0 is None else [[None] * self.num_envs for _ in range(t0 - 1)]
        if len(actions) != self.num_envs:
            raise ConfigError(f"reset option 'actions': {len(actions)} lists for num_envs={self.num_envs}; "
                              "pass one list of t0-1 phrases per sub-env.")
        return [list(step) for step in zip(*actions, strict=True)]

    def _first_frame(self, i: int) -> tuple[np.ndarray, dict[str, Any]]:
        """A new first frame for sub-env i, from the same source as the last reset: uint8 (H, W, 3), info."""
        if "frames" in self._options:
            return np.asarray(self._options["frames"][i][-1]), {}
        if self._prompts[i] is not None:
            # Imagined on the side with a one-world session seeded from np_random (one extra pass on autoreset).
            with self.model.session(seed=int(self.np_random.integers(_SEED_BOUND)), **self.session_kwargs) as side:
                return np.array(side.reset(prompt=self._prompts[i]), copy=True), {}
        seed = int(self.np_random.integers(_SEED_BOUND))
        return self._world_frame(seed), {"world_seed": seed}

    def _reanchor(self, frames: np.ndarray, resetting: np.ndarray, infos: dict[str, Any]
                  ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset the batched session on one frame per sub-env: frames (N, H, W, 3) just generated for the
        continuing sub-envs, new first frames for the resetting ones. Returns the frames and the infos."""
        frames = frames.copy()
        for i in np.flatnonzero(resetting):
            frames[i], info = self._first_frame(int(i))
            infos = self._add_info(infos, info, int(i))
        prompts = None if all(p is None for p in self._prompts) else self._prompts
        assert self.session is not None
        self.session.reset(frames=frames[:, None], prompt=prompts)
        return frames, infos
