"""Ground-truth Gymnasium worlds that training data comes from; importing registers them."""

from gymnasium.envs.registration import register, registry

from worldsim.config import PUSHWORLD_ACTIONS

from .pushworld import PushWorld, detect_objects

PUSHWORLD_ID = "worldsim/PushWorld-v0"

if PUSHWORLD_ID not in registry:  # re-import (e.g. importlib.reload) must not register twice
    register(id=PUSHWORLD_ID, entry_point="worldsim.envs.pushworld:PushWorld", max_episode_steps=200)

__all__ = ["PUSHWORLD_ACTIONS", "PUSHWORLD_ID", "PushWorld", "detect_objects"]
