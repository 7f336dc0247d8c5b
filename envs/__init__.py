"""Gymnasium envs: the ground-truth worlds of the training data, and world models as envs; importing registers them."""

from gymnasium.envs.registration import register, registry

from .pushworld import PUSHWORLD_ACTIONS, PushWorld, detect_objects

PUSHWORLD_ID = "worldsim/PushWorld-v0"
WORLD_MODEL_ID = "worldsim/WorldModel-v0"
ROOMS_ID = "worldsim/Rooms-v0"

if PUSHWORLD_ID not in registry:  # re-import (e.g. importlib.reload) must not register twice
    register(id=PUSHWORLD_ID, entry_point="worldsim.envs.pushworld:PushWorld", max_episode_steps=200)
if ROOMS_ID not in registry:
    register(id=ROOMS_ID, entry_point="worldsim.envs.rooms.env:Rooms", max_episode_steps=200)
if WORLD_MODEL_ID not in registry:
    register(id=WORLD_MODEL_ID, entry_point="worldsim.envs.world_model_env:WorldModelEnv",
             vector_entry_point="worldsim.envs.world_model_vector:WorldModelVectorEnv", max_episode_steps=480)

from . import pushworld_plugin  # noqa: E402, F401  (registers the "pushworld" world once its env id exists)
from .rooms import plugin as _rooms_plugin  # noqa: E402, F401  (the "rooms" world, likewise)

__all__ = ["PUSHWORLD_ACTIONS", "PUSHWORLD_ID", "ROOMS_ID", "WORLD_MODEL_ID", "PushWorld", "detect_objects"]
