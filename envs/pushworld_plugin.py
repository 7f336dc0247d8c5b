"""PushWorld as a worldsim world plug-in: its env, data policies, detector and demo script in one registry entry."""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from worldsim.errors import WorldSimError
from worldsim.plan_copy import CopyGoals
from worldsim.worlds import World, register

from .push_task import PushTask
from .pushworld import PushWorld, detect_objects
from .pushworld_eval import EXTRAS, eval_extras
from .pushworld_policies import POLICIES

ENV_ID = "worldsim/PushWorld-v0"

# `worldsim demo`: one lap of the room, then a pause; cycled or truncated to the number of steps.
DEMO_SCRIPT = ("move right",) * 8 + ("move down",) * 8 + ("move left",) * 8 + ("move up",) * 8 + ("stay",) * 8


def make_env(size: int | None = None, action_mode: str | None = None, **kwargs: Any) -> gym.Env:
    """PushWorld with render_mode="rgb_array": `size` px frames (default 64; below 32 px it draws 64);
    action_mode "text" (phrases) or None/"discrete" (Discrete(5)). PushWorld has no vector actions."""
    if action_mode == "vector":
        raise WorldSimError("PushWorld's actions are the five phrases (or Discrete(5)); it has no vector actions. "
                            "Fix: use action_mode='text' or None.")
    if size is not None and int(size) >= 32:  # PushWorld draws rooms of ≥ 32 px; callers resize smaller frames
        kwargs["size"] = int(size)
    return gym.make(ENV_ID, render_mode="rgb_array", action_mode=action_mode or "discrete", **kwargs)


WORLD = register(World(
    name="pushworld",
    env_id=ENV_ID,
    make_env=make_env,
    policies=POLICIES,
    default_policy="pushworld",
    detector=detect_objects,
    eval_extras=eval_extras,
    # `worldsim plan`: bring the block to where it is 25 steps later in a held-out episode, within PushWorld's
    # success radius (4 px in its 64 px room), the env deep-copied as the real planner's simulator
    goals=CopyGoals(lambda: PushWorld(render_mode="rgb_array", action_mode="text"), lambda env: env.positions(),
                    "block_pos", PushTask().success, "stay", POLICIES["pushworld"], agent="agent_pos"),
    extras={"demo_script": DEMO_SCRIPT, **EXTRAS},
))
