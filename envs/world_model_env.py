"""`WorldModelEnv` ("worldsim/WorldModel-v0"): a Gymnasium env whose dynamics are a world model's session."""

from __future__ import annotations

import os
import string
from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeGuard

import cv2
import gymnasium as gym
import numpy as np
from gymnasium import spaces

from worldsim import worlds
from worldsim.errors import ConfigError, SessionStateError, suggest
from worldsim.frames import check_discrete_action
from worldsim.session import Session
from worldsim.world_model import WorldModel

PUSHWORLD_ID = "worldsim/PushWorld-v0"

RESET_OPTIONS = ("frames", "prompt", "world_seed", "actions")
# Session arguments the env owns: they come from the env's own arguments or its seeded generator.
_OWNED_SESSION_KWARGS = {"seed": "reset(seed=...)", "batch_size": "num_envs (vector env)",
                         "strict_actions": "strict_text", "reward_fn": "reward_fn"}
_SEED_BOUND = 2**31 - 1


class ActionText(spaces.Text):
    """Text actions (printable, ≤ 64 characters) whose `sample()` draws a phrase of the model's vocabulary.

    With strict=True only vocabulary phrases are members; otherwise any printable text is.
    """

    def __init__(self, vocabulary: Sequence[str], strict: bool = True,
                 seed: int | np.random.Generator | None = None) -> None:
        super().__init__(max_length=64, min_length=0, charset=string.printable, seed=seed)
        self.vocabulary = tuple(vocabulary)
        self.strict = strict

    def sample(self, mask: Any = None, probability: Any = None) -> str:
        """A vocabulary phrase drawn uniformly (mask and probability are not supported)."""
        return self.vocabulary[int(self.np_random.integers(len(self.vocabulary)))]

    def contains(self, x: Any) -> bool:
        return super().contains(x) and (not self.strict or x in self.vocabulary)

    def __repr__(self) -> str:
        return f"ActionText({list(self.vocabulary)}, strict={self.strict})"


def load_world_model(model: str | os.PathLike | WorldModel) -> WorldModel:
    """A WorldModel (or a `worldsim.bridges.RemoteWorldModel`, which mirrors it) as given, or loaded by
    `WorldModel.load`: a checkpoint directory, a bundled name, or a preset name such as 'tiny' (untrained)."""
    if isinstance(model, WorldModel) or _is_remote(model):
        return model
    if not isinstance(model, (str, os.PathLike)):
        raise ConfigError(f"model must be a WorldModel, a RemoteWorldModel, a checkpoint path, a bundled name or a "
                          f"preset name; received {type(model).__name__} {model!r}.")
    return WorldModel.load(model)


def _is_remote(model: Any) -> TypeGuard[WorldModel]:  # a RemoteWorldModel mirrors WorldModel's interface
    from worldsim.bridges import RemoteWorldModel  # here: the env does not need the bridge's sockets otherwise

    return isinstance(model, RemoteWorldModel)


def resolve_action_mode(model: WorldModel, action_mode: str | None) -> str:
    """The env's action mode: "discrete" or "text" for a text-action model, "vector" for a vector-action one
    (None picks "discrete" or "vector" by the model's action spec)."""
    vector = model.action_spec.is_vector
    allowed = ("vector",) if vector else ("discrete", "text")
    if action_mode is None:
        return allowed[0]
    if action_mode not in allowed:
        kind = "vector" if vector else "text"
        raise ConfigError(f"action_mode={action_mode!r} does not fit this model's {kind} actions "
                          f"({model.action_spec.describe()}); expected one of {list(allowed)}."
                          f"{suggest(str(action_mode), allowed)}")
    return action_mode


def action_space_for(model: WorldModel, action_mode: str, strict_text: bool) -> spaces.Space:
    """Discrete(len(vocabulary)) or ActionText over the vocabulary (text models); Box(low, high, (d,)) (vector)."""
    spec = model.action_spec
    if action_mode == "vector":
        return spaces.Box(np.asarray(spec.low, np.float32), np.asarray(spec.high, np.float32), (spec.dim,),
                          np.float32)
    if action_mode == "discrete":
        return spaces.Discrete(len(model.vocabulary))
    return ActionText(model.vocabulary, strict=strict_text)


def session_action(action: Any, model: WorldModel, action_mode: str) -> Any:
    """What the session receives: vocabulary[i] for a discrete action; a text or vector action as given (the
    session validates it: an unknown phrase gets a suggestion, a vector its shape and bounds checked)."""
    if action_mode == "discrete":
        return check_discrete_action(action, model.vocabulary, "WorldModelEnv")
    return action


def action_info(action: Any) -> Any:
    """An action as `info` reports it: the phrase, or the vector as a list of floats."""
    return action if isinstance(action, str) else np.asarray(action, np.float32).tolist()


def session_settings(session_kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """Validated extra `Session` settings (sampler, guidance, temperature, …); the env owns seed and batch."""
    kwargs = dict(session_kwargs or {})
    for key, owner in _OWNED_SESSION_KWARGS.items():
        if key in kwargs:
            raise ConfigError(f"session_kwargs[{key!r}] is set by the env; pass it as {owner} instead.")
    return kwargs


def model_world(model: WorldModel) -> str:
    """The env id of the world a model was trained on (its meta.json `env_id`; PushWorld when it has none)."""
    meta = getattr(model, "meta", None) or {}
    return str(meta.get("env_id") or PUSHWORLD_ID)


def world_frame(height: int, width: int, world_seed: int, env_id: str = PUSHWORLD_ID) -> np.ndarray:
    """The first frame of the real world `env_id` reset with `world_seed`, resized to (H, W): uint8 (1, H, W, 3).

    The world's plug-in makes the env where one is registered (asked for square frames of side H; it may draw
    another size, which is then resized with area averaging); else `gymnasium.make(env_id, render_mode=...)`.
    """
    world = worlds.find(env_id)
    if world is not None and world.make_env is not None:
        env = world.make_env(size=height if height == width else None)
    else:
        env = gym.make(env_id, render_mode="rgb_array")
    try:
        env.reset(seed=int(world_seed))
        frame = env.render()
    finally:
        env.close()
    if frame.shape[:2] != (height, width):
        frame = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(frame, np.uint8)[None]


def check_options(options: dict[str, Any] | None) -> dict[str, Any]:
    """Reset options with known keys only, and at most one source of first frames."""
    options = dict(options or {})
    for key in options:
        if key not in RESET_OPTIONS:
            raise ConfigError(f"unknown reset option {key!r}; expected keys among {list(RESET_OPTIONS)}."
                              f"{suggest(str(key), RESET_OPTIONS)}")
    if "frames" in options and "world_seed" in options:
        raise ConfigError("reset options 'frames' and 'world_seed' both give the first frames; pass one of them.")
    if "actions" in options and "frames" not in options:
        raise ConfigError("reset option 'actions' (between the given first frames) needs 'frames' as well.")
    return options


class WorldModelEnv(gym.Env):
    """Gymnasium env whose next frame is imagined by a world model (one `Session` per episode).

    Args:
        model: a WorldModel, a checkpoint directory, a bundled model name, a preset name (untrained), or a
            `worldsim.bridges.RemoteWorldModel` (the sessions then live on its server).
        action_mode: for a text-action model "discrete" (Discrete over the vocabulary, the default) or "text"
            (ActionText phrases); for a vector-action model "vector" (Box(low, high, (d,)), the default).
        strict_text: in text mode, reject phrases outside the vocabulary (InvalidAction with a suggestion).
        render_mode: "rgb_array" or None.
        session_kwargs: extra `Session` settings (sampler, guidance, temperature, tol, denoise, …).
        reward_fn: optional f(frame uint8 (H, W, 3), action) -> float replacing the model's reward head.

    Observations are uint8 (H, W, 3) frames. `reset(options=...)` takes {"frames": uint8 (t0, H, W, 3)} (with
    optional "actions": t0-1 actions), {"prompt": str} (imagine frame 0; may go with "frames"), or
    {"world_seed": int} (the first frame of the real world the model was trained on, its meta.json `env_id`,
    PushWorld by default); by default a world seed drawn from `np_random`.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 16}

    def __init__(self, model: str | os.PathLike | WorldModel = "pushworld-64",
                 action_mode: Literal["discrete", "text", "vector"] | None = None, strict_text: bool = True,
                 render_mode: str | None = "rgb_array", session_kwargs: dict[str, Any] | None = None,
                 reward_fn: Callable[[np.ndarray, Any], float] | None = None) -> None:
        if render_mode not in (None, "rgb_array"):
            raise ConfigError(f"render_mode={render_mode!r} is not supported; use 'rgb_array' or None.")
        self.model = load_world_model(model)
        cfg = self.model.config
        self.metadata = {**self.metadata, "render_fps": cfg.fps}
        self.render_mode = render_mode
        self.action_mode = resolve_action_mode(self.model, action_mode)
        self.action_space = action_space_for(self.model, self.action_mode, strict_text)
        self.observation_space = spaces.Box(0, 255, (cfg.height, cfg.width, 3), np.uint8)
        self.strict_text = strict_text
        self.reward_fn = reward_fn
        self.session_kwargs = session_settings(session_kwargs)
        self.session: Session | None = None
        self._frame: np.ndarray | None = None

    def _open_session(self) -> Session:
        if self.session is not None:
            self.session.close()
        seed = int(self.np_random.integers(_SEED_BOUND))
        self.session = self.model.session(seed=seed, strict_actions=self.strict_text or self.action_mode != "text",
                                          reward_fn=self.reward_fn, **self.session_kwargs)
        return self.session

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode; returns (frame uint8 (H, W, 3), info). info has "world_seed" when PushWorld drew it."""
        super().reset(seed=seed)
        options = check_options(options)
        session = self._open_session()
        info: dict[str, Any] = {}
        frames = options.get("frames")
        if frames is None and "prompt" not in options:
            info["world_seed"] = int(options.get("world_seed", self.np_random.integers(_SEED_BOUND)))
            cfg = self.model.config
            frames = world_frame(cfg.height, cfg.width, info["world_seed"], model_world(self.model))
        frame = session.reset(frames=frames, prompt=options.get("prompt"), actions=options.get("actions"))
        self._frame = np.array(frame, copy=True)
        return self._frame.copy(), info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Imagine the next frame; returns (frame uint8 (H, W, 3), reward, terminated, truncated=False, info) with
        info = {"log_prob": nats, "bits_per_dim", "iterations": sampler iterations, and "action_text" (the phrase
        the session received) or, for a vector model, "action" (the vector as a list)}."""
        if self.session is None:
            raise SessionStateError("step called before reset; call env.reset() first.")
        act = session_action(action, self.model, self.action_mode)
        out = self.session.step(act)
        self._frame = np.array(out.frame, copy=True)
        info = {"log_prob": float(out.log_prob), "bits_per_dim": float(out.bits_per_dim),
                "iterations": int(out.info["iterations"])}
        info["action_text" if isinstance(act, str) else "action"] = action_info(act)
        return self._frame.copy(), float(out.reward), bool(out.terminated), False, info

    def render(self) -> np.ndarray | None:
        """The last frame, uint8 (H, W, 3), with render_mode 'rgb_array' (None before the first reset)."""
        if self.render_mode != "rgb_array" or self._frame is None:
            return None
        return self._frame.copy()

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None
