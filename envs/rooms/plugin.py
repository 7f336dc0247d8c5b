"""Rooms as a worldsim world plug-in: its env, data policies, layout detector, eval extras and demo script."""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from worldsim.worlds import World, register

from .detector import detect_layout
from .env import TURN_STEPS
from .eval import EXTRAS, eval_extras
from .policies import POLICIES

ENV_ID = "worldsim/Rooms-v0"

# `worldsim demo`: look all around, walk a little, look back the way you came
DEMO_SCRIPT = ("turn left",) * TURN_STEPS + ("move forward",) * 8 + ("turn right",) * (TURN_STEPS // 2) \
    + ("move forward",) * 8 + ("stay",) * 4


def make_env(size: int | None = None, action_mode: str | None = None, **kwargs: Any) -> gym.Env:
    """Rooms with render_mode="rgb_array": `size` px frames (default 64, at least 16), action_mode "text" (the
    phrases), "vector" (Box([-1, 1]³): yaw rate, forward, strafe) or None/"discrete" (Discrete(7))."""
    if size is not None:
        kwargs["size"] = int(size)
    return gym.make(ENV_ID, render_mode="rgb_array", action_mode=action_mode or "discrete", **kwargs)


WORLD = register(World(
    name="rooms",
    env_id=ENV_ID,
    make_env=make_env,
    policies=POLICIES,
    default_policy="rooms",
    detector=detect_layout,
    eval_extras=eval_extras,
    extras={"demo_script": DEMO_SCRIPT, **EXTRAS},
))
